"""`ladder_meta.json`: the contract between training, evaluation and the laws.

Every exported checkpoint carries one; evaluation copies it into its results under the key
`taskladder`, and the readers take run, size, N, D, step and FLOPs from it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .facts import train_flops
from .io import read_json, write_json

META_FILE = "ladder_meta.json"
RESULTS_KEY = "taskladder"  # where an lm-eval results file holds the model's LadderMeta
TRAIN_LOSSES = "train_losses.jsonl"  # in a run's folder: {"step", "loss"} per logged step


def train_losses(run_dir: str | Path) -> dict[int, float]:
    """{step: train loss} of a trained run (empty where training logged none)."""
    path = Path(run_dir) / TRAIN_LOSSES
    if not path.is_file():
        return {}
    rows = (json.loads(line) for line in path.read_text().splitlines() if line.strip())
    return {int(r["step"]): float(r["loss"]) for r in rows}


def exported_losses(model_dir: str | Path) -> dict[int, float]:
    """The training loss curve of the run that exported `model_dir` as `<run>/hf/step<k>`
    (how taskladder lays out its checkpoints); empty for a model laid out otherwise."""
    d = Path(model_dir)
    return train_losses(d.parent.parent) if d.parent.name == "hf" else {}


@dataclass(frozen=True)
class LadderMeta:
    """One checkpoint of one ladder run: what the laws need to place it on (N, D)."""

    run: str
    size: str
    N: float
    D: float
    step: int
    flops: float
    lm_losses: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("N", "D", "flops"):
            v = getattr(self, name)
            if not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
                raise InputError(f"{META_FILE}: {name} must be a positive number, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = META_FILE) -> LadderMeta:
        missing = [k for k in ("run", "N", "D", "step") if k not in d]
        if missing:
            raise InputError(f"{where}: missing {', '.join(missing)}")
        run = str(d["run"])
        N, D = float(d["N"]), float(d["D"])
        return cls(run=run, size=str(d.get("size") or run.split("-")[0]), N=N, D=D,
                   step=int(d["step"]), flops=float(d.get("flops") or train_flops(N, D)),
                   lm_losses={str(k): float(v) for k, v in (d.get("lm_losses") or {}).items()})

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write(self, model_dir: str | Path) -> Path:
        return write_json(Path(model_dir) / META_FILE, self.to_dict(), indent=1)

    @classmethod
    def read(cls, model_dir: str | Path) -> LadderMeta:
        path = Path(model_dir) / META_FILE
        if not path.is_file():
            raise InputError(f"{path} does not exist")
        return cls.from_dict(read_json(path), where=str(path))


@dataclass(frozen=True)
class Checkpoint:
    """One exported checkpoint: its Hugging Face folder and the LadderMeta written there (the
    record training returns and the pipeline's stages pass on)."""

    hf_dir: str
    meta: LadderMeta

    @property
    def step(self) -> int:
        return self.meta.step

    @property
    def tokens(self) -> int:
        return int(self.meta.D)

    @property
    def val_loss(self) -> float:
        return self.meta.lm_losses["ce_val"]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Checkpoint:
        """From a result.json or the pipeline's state file; one without the meta reads it from
        the export; `dir` is the state file's name for the folder before 2026-12-03."""
        folder = data["hf_dir"] if "hf_dir" in data else data["dir"]
        meta = data.get("meta")
        return cls(hf_dir=folder, meta=LadderMeta.from_dict(meta) if meta
                   else LadderMeta.read(folder))
