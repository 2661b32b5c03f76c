"""Kept checkpoints -> Hugging Face folders (`Olmo2ForCausalLM` + tokenizer + ladder_meta.json).

olmo-core's own converter does the work; each export is written to a temp folder and renamed,
so a folder that exists is complete. `ladder_meta.json` is the contract with evaluation and
the laws: {"run", "size", "N", "D", "step", "flops", "lm_losses": {"ce_val"}} where
  N      = non-embedding parameters incl. the output head (olmo-core's count; the paper's),
  D      = tokens seen at this checkpoint = step x batch tokens,
  flops  = 6 N D (training compute to reach the checkpoint; attention FLOPs not counted),
  ce_val = mean next-token cross-entropy (nats) on the corpus's held-out split.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path

from taskladder.common.facts import train_flops
from taskladder.common.meta import META_FILE, LadderMeta
from taskladder.training.callbacks import read_val_losses, validation_loss
from taskladder.training.corpus import TokenData
from taskladder.training.spec import LadderSpec, RunPlan


def hf_dir(run_dir: Path, step: int) -> Path:
    return run_dir / "hf" / f"step{step}"


def ladder_meta(plan: RunPlan, step: int, ce_val: float) -> LadderMeta:
    d = float(step * plan.batch_tokens)
    return LadderMeta(run=plan.run, size=plan.size, N=plan.N, D=d, step=step,
                      flops=train_flops(plan.N, d), lm_losses={"ce_val": ce_val})


def export_checkpoint(run_dir: Path, step: int, plan: RunPlan, spec: LadderSpec,
                      data: TokenData, state_dict: dict | None = None,
                      process_group=None) -> LadderMeta:
    """Convert `run_dir/step<step>` (or these weights of it) to `run_dir/hf/step<step>`.

    Returns the export's LadderMeta (its folder is `hf_dir(run_dir, step)`); skipped, and the
    meta read back, when the export is already there. Under torchrun only rank 0 exports: it
    reads the checkpoint within `process_group` (itself alone), as the other ranks do not join.
    """
    from olmo_core.nn.hf.convert_checkpoint import convert_checkpoint_to_hf
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" per export

    final = hf_dir(run_dir, step)
    if (final / META_FILE).is_file():
        return LadderMeta.read(final)
    cfg = json.loads((run_dir / "config.json").read_text())
    final.parent.mkdir(parents=True, exist_ok=True)
    if state_dict is None and process_group is not None:
        state_dict = _read_weights(run_dir / f"step{step}", cfg["model"], process_group)
    tmp = Path(tempfile.mkdtemp(prefix=f".step{step}-", dir=final.parent))
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the converter prints the config
            convert_checkpoint_to_hf(
                original_checkpoint_path=None if state_dict else str(run_dir / f"step{step}"),
                model_state_dict=state_dict, output_path=str(tmp),
                transformer_config_dict=cfg["model"],
                tokenizer_config_dict=cfg["dataset"]["tokenizer"],
                tokenizer_id=str(data.tokenizer_dir),
                max_sequence_length=spec.sequence_length,
                validate=False)  # its logit check costs a model load; tests compare logits
        ce_val = read_val_losses(run_dir).get(step)
        if ce_val is None:  # killed between checkpoint and score: score the export
            ce_val = _hf_val_loss(tmp, data, spec)
        meta = ladder_meta(plan, step, ce_val)
        meta.write(tmp)
        if final.exists():  # a stale, incomplete export
            shutil.rmtree(final)
        tmp.rename(final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return meta


def _read_weights(ckpt: Path, model_cfg: dict, process_group) -> dict:
    from olmo_core.distributed.checkpoint import load_model_and_optim_state
    from olmo_core.nn.transformer import TransformerConfig

    model = TransformerConfig.from_dict(model_cfg).build(init_device="cpu")
    load_model_and_optim_state(str(ckpt / "model_and_optim"), model,
                               process_group=process_group)
    return model.state_dict()


def _hf_val_loss(path: Path, data: TokenData, spec: LadderSpec) -> float:
    from transformers import AutoModelForCausalLM

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype="float32")
    return validation_loss(model, data.val_array(spec.corpus.val_max_tokens),
                           spec.sequence_length)
