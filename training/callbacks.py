"""Trainer callbacks of a ladder run: validation loss, batch log, progress bar, watch.

Each writes what it records next to the checkpoints (atomically), so a resumed run keeps the
history of the killed one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from olmo_core.distributed.utils import get_rank
from olmo_core.train.callbacks import Callback

from taskladder.common.io import write_json
from taskladder.common.meta import TRAIN_LOSSES

VAL_LOSSES = "val_losses.json"
BATCH_LOG = "batches.jsonl"


def read_val_losses(run_dir: Path) -> dict[int, float]:
    path = run_dir / VAL_LOSSES
    return {int(k): v for k, v in json.loads(path.read_text()).items()} if path.exists() else {}


@torch.no_grad()
def validation_loss(model: torch.nn.Module, tokens: np.ndarray, seq_len: int,
                    batch_sequences: int = 16) -> float:
    """Mean next-token cross-entropy (nats) over the held-out tokens, in full windows.

    Works for an olmo-core `Transformer` (returns logits) and a Hugging Face causal LM
    (returns an output with `.logits`).
    """
    n = len(tokens) // seq_len
    if n == 0:
        raise ValueError(f"validation split has {len(tokens)} tokens, fewer than seq len {seq_len}")
    windows = torch.from_numpy(np.asarray(tokens[: n * seq_len], dtype=np.int64)).view(n, seq_len)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for i in range(0, n, batch_sequences):
        ids = windows[i: i + batch_sequences].to(device)
        out = model(ids)
        logits = getattr(out, "logits", out)[:, :-1].float()
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1),
                               reduction="sum")
        total += float(loss)
        count += ids[:, 1:].numel()
    model.train(was_training)
    return total / count


@dataclass
class ValLossCallback(Callback):
    """Scores the held-out split at every checkpoint step (the run's "C4 loss").

    With `export` set (one CPU process) it also hands the in-memory weights to the Hugging
    Face export, which saves re-reading the checkpoint from disk.
    """

    run_dir: Path = Path(".")
    tokens: np.ndarray | None = None
    seq_len: int = 0
    steps: frozenset[int] = frozenset()
    export: Callable[..., Any] | None = None

    def post_step(self) -> None:
        if self.step not in self.steps:
            return
        model = self.trainer.train_module.model
        loss = validation_loss(model, self.tokens, self.seq_len)  # every rank (FSDP gathers)
        if get_rank() != 0:
            return
        losses = read_val_losses(self.run_dir)
        losses[self.step] = loss
        write_json(self.run_dir / VAL_LOSSES, {str(k): v for k, v in sorted(losses.items())})
        if self.export is not None:
            weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.export(self.step, state_dict=weights)


@dataclass
class BatchLogCallback(Callback):
    """Appends (step, hash of the batch's token ids) per step: proves the data order on resume."""

    run_dir: Path = Path(".")

    def pre_step(self, batch: dict[str, Any]) -> None:
        if get_rank() != 0:
            return
        digest = hashlib.sha256(batch["input_ids"].cpu().numpy().tobytes()).hexdigest()[:16]
        with (self.run_dir / BATCH_LOG).open("a") as fh:
            fh.write(json.dumps({"step": self.step, "batch": digest, "pid": os.getpid()}) + "\n")


@dataclass
class TrainLossCallback(Callback):
    """Appends (step, train CE loss reduced over all ranks): the run's loss curve."""

    run_dir: Path = Path(".")

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        loss = metrics.get("train/CE loss")
        if loss is None or get_rank() != 0:
            return
        with (self.run_dir / TRAIN_LOSSES).open("a") as fh:
            fh.write(json.dumps({"step": step, "loss": loss, "pid": os.getpid()}) + "\n")


@dataclass
class ProgressCallback(Callback):
    """A tqdm bar per run: steps, tokens/s and ETA; the last train loss as postfix."""

    desc: str = "run"
    total_steps: int = 0
    tokens_per_step: int = 0
    enabled: bool = True
    _bar: Any = field(default=None, repr=False)
    _t0: float = 0.0
    _s0: int = 0
    _speed: str = ""
    _loss: str = ""

    def pre_train(self) -> None:
        if not self.enabled or get_rank() != 0:
            return
        from tqdm.auto import tqdm

        self._bar = tqdm(total=self.total_steps, initial=self.step, desc=self.desc,
                         unit="step", dynamic_ncols=True, leave=True)
        self._t0, self._s0 = time.perf_counter(), self.step

    def post_step(self) -> None:
        if self._bar is None:
            return
        self._bar.update(self.step - self._bar.n)
        elapsed = time.perf_counter() - self._t0
        if elapsed > 0 and self.step > self._s0:
            self._speed = f"{(self.step - self._s0) * self.tokens_per_step / elapsed:,.0f} tok/s"
            self._bar.set_postfix_str(f"{self._speed}{self._loss}", refresh=False)

    def log_metrics(self, step: int, metrics: dict[str, float]) -> None:
        loss = metrics.get("train/CE loss")
        if loss is not None and math.isfinite(loss):
            self._loss = f", loss {loss:.3f}"

    def post_train(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def on_error(self, exc: BaseException) -> None:
        self.post_train()


class Watch(Protocol):
    """What judges a run's checkpoints while it trains (the conductor's scorer and gate)."""

    stop_on_drift: bool

    def judge(self, plan: Any, step: int, hf_dir: Path) -> str:
        """Score the exported checkpoint at `hf_dir`; the verdict: pass, drift or untrusted."""


@dataclass
class WatchCallback(Callback):
    """Exports every kept checkpoint once it is saved (a no-op where the validation callback
    already did) and hands it to `judge`; with `stop_on_drift` a `drift` verdict cancels the
    run there. One process only (the watch scores on this one)."""

    steps: frozenset[int] = frozenset()
    export: Callable[[int], Path] | None = None  # step -> the checkpoint's HF folder
    judge: Callable[[int, Path], str] | None = None
    stop_on_drift: bool = False
    stopped_at: int | None = None

    def post_step(self) -> None:
        if self.step not in self.steps or self.judge is None or self.export is None:
            return
        if self.judge(self.step, self.export(self.step)) == "drift" and self.stop_on_drift:
            self.stopped_at = self.step
            self.trainer.cancel_run(f"trajectory gate: drift at step {self.step}", no_sync=True)
