"""Train one ladder run with olmo-core's Trainer; resume from the last checkpoint if killed.

CPU: one process, gloo. GPU: the same code under `torchrun` (FSDP over all ranks, bf16
params, fp32 reductions), as olmo-core's own scripts do it. The Trainer stores the data
loader position in every checkpoint and `load_strategy=if_available` picks up the latest
one in the save folder, so a killed run continues at the step after its last checkpoint with
the same batches in the same order.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
import logging
import os
import shutil
from dataclasses import asdict
from functools import partial
from pathlib import Path

import torch

from taskladder.common.errors import DriftStop, InputError, raise_interrupted
from taskladder.common.io import write_json
from taskladder.training.callbacks import (
    BatchLogCallback,
    ProgressCallback,
    TrainLossCallback,
    ValLossCallback,
    Watch,
    WatchCallback,
)
from taskladder.training.corpus import TokenData
from taskladder.training.export import export_checkpoint, hf_dir
from taskladder.training.model import model_config
from taskladder.training.spec import LadderSpec, ModelSize, RunPlan

PLAN_FILE = "plan.json"
_ENV_READY = False


def ensure_environment(spec: LadderSpec) -> None:
    """olmo-core's process group: gloo for one CPU process, NCCL (+gloo) under torchrun."""
    global _ENV_READY
    from olmo_core.train import prepare_training_environment

    if _ENV_READY:
        return
    backend = "gloo" if spec.device == "cpu" else "cpu:gloo,cuda:nccl"
    omp = os.environ.get("OMP_NUM_THREADS")
    with contextlib.redirect_stdout(io.StringIO()):  # "Setting env var ..." lines
        prepare_training_environment(seed=spec.seed, backend=backend)
    if omp is None:  # olmo-core sets 8 whatever the machine: children would oversubscribe it
        os.environ.pop("OMP_NUM_THREADS", None)
    for name in ("olmo_core", "torch.distributed"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # olmo-core runs gc.collect() when loading state and shutting down; with torch,
    # transformers and lm-eval imported that is ~0.8 s a call. Freezing the objects alive
    # now (modules, classes) leaves only training's own garbage to scan.
    gc.collect()
    gc.freeze()
    _ENV_READY = True


def world_size() -> int:
    """Ranks of this job (torchrun sets WORLD_SIZE; one process otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def barrier() -> None:
    """Wait for every rank (a no-op for one process)."""
    import torch.distributed as dist

    if world_size() > 1 and dist.is_initialized():
        dist.barrier()


def rank0_group():
    """A process group of rank 0 alone (created by every rank), for reads only rank 0 makes."""
    import torch.distributed as dist

    return dist.new_group([0]) if world_size() > 1 else None


def check_plan(run_dir: Path, plan: RunPlan) -> None:
    """A run folder belongs to one plan; a changed spec must not resume someone else's run."""
    path = run_dir / PLAN_FILE
    mine = json.loads(json.dumps(asdict(plan)))
    if path.exists():
        old = json.loads(path.read_text())
        changed = sorted(k for k in mine if k != "est_seconds" and old.get(k) != mine[k])
        if changed:
            raise InputError(f"{run_dir}: holds run {plan.run} trained with other settings "
                             f"({', '.join(changed)}); use another output_dir")
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(path, mine)


def save_config(run_dir: Path, size: ModelSize, spec: LadderSpec, data: TokenData) -> dict:
    """The `config.json` olmo-core's HF converter reads (model + tokenizer)."""
    cfg = {"model": model_config(size, spec.vocab_size).as_config_dict(),
           "dataset": {"tokenizer": data.tokenizer_config().as_config_dict()}}
    write_json(run_dir / "config.json", cfg)
    return cfg


def build_trainer(plan: RunPlan, size: ModelSize, spec: LadderSpec, data: TokenData,
                  run_dir: Path, progress: bool = True, watch: Watch | None = None):
    """The olmo-core Trainer of this run (model, data loader, AdamW + cosine, callbacks);
    `watch` (one process only) judges each kept checkpoint while the run trains."""
    from olmo_core.data import NumpyDataLoaderConfig, NumpyFSLDatasetConfig
    from olmo_core.distributed.utils import get_world_size
    from olmo_core.optim import AdamWConfig, CosWithWarmup
    from olmo_core.train import Duration, TrainerConfig
    from olmo_core.train.callbacks import CheckpointerCallback
    from olmo_core.train.train_module import TransformerTrainModuleConfig
    from olmo_core.utils import seed_all

    ensure_environment(spec)
    seed_all(spec.seed)  # same init whether this run is first in the process or not
    cuda = spec.device == "cuda"
    world = get_world_size()
    check_ranks(spec, world)
    device = torch.device("cuda" if cuda else "cpu")
    model = model_config(size, spec.vocab_size).build(init_device="meta" if cuda else "cpu")
    micro = spec.rank_microbatch_sequences or size.batch_sequences // world
    train_module = TransformerTrainModuleConfig(
        rank_microbatch_size=micro * spec.sequence_length,
        max_sequence_length=spec.sequence_length,
        optim=AdamWConfig(lr=plan.lr, betas=(0.9, 0.95), eps=1e-8,
                          weight_decay=spec.weight_decay),
        scheduler=CosWithWarmup(warmup=plan.warmup_steps, alpha_f=spec.final_lr_fraction),
        max_grad_norm=1.0,
        compile_model=spec.compile_model and cuda,
        dp_config=_data_parallel(cuda, world),
    ).build(model, device=device)
    dataset = NumpyFSLDatasetConfig(
        paths=[str(p) for p in data.train_paths], sequence_length=spec.sequence_length,
        tokenizer=data.tokenizer_config(), dtype=data.dtype, work_dir=str(run_dir / "work"),
    ).build()
    loader = NumpyDataLoaderConfig(
        global_batch_size=plan.batch_tokens, seed=spec.seed, num_workers=0,
        work_dir=str(run_dir / "work"),
    ).build(dataset, dp_process_group=train_module.dp_process_group)
    interval = plan.checkpoint_steps[0]
    trainer = (
        TrainerConfig(save_folder=str(run_dir), work_dir=str(run_dir / "work"),
                      device=device.type, max_duration=Duration.steps(plan.steps),
                      metrics_collect_interval=max(1, min(10, interval)),
                      cancel_check_interval=10_000)
        .with_callback("checkpointer", CheckpointerCallback(
            save_interval=None, fixed_steps=list(plan.checkpoint_steps), max_checkpoints=None,
            ephemeral_save_interval=None, save_async=False, pre_train_checkpoint=False))
        .with_callback("val_loss", ValLossCallback(
            run_dir=run_dir, tokens=data.val_array(spec.corpus.val_max_tokens),
            seq_len=spec.sequence_length, steps=frozenset(plan.checkpoint_steps),
            export=None if cuda or world > 1 else partial(
                export_checkpoint, run_dir, plan=plan, spec=spec, data=data)))
        .with_callback("batch_log", BatchLogCallback(run_dir=run_dir))
        .with_callback("train_loss", TrainLossCallback(run_dir=run_dir))
        .with_callback("progress", ProgressCallback(
            desc=plan.run, total_steps=plan.steps, tokens_per_step=plan.batch_tokens,
            enabled=progress))
    )
    if watch is not None:
        if world > 1:
            raise InputError("gate.watch: the live watch scores checkpoints in one process; "
                             f"this run has {world} ranks")
        trainer = trainer.with_callback("watch", WatchCallback(
            steps=frozenset(plan.checkpoint_steps), judge=partial(watch.judge, plan),
            export=partial(_exported, run_dir, plan, spec, data),
            stop_on_drift=watch.stop_on_drift))
    return trainer.build(train_module, loader)


def _exported(run_dir: Path, plan: RunPlan, spec: LadderSpec, data: TokenData,
              step: int) -> Path:
    """The checkpoint's HF export (made here unless the validation callback made it)."""
    export_checkpoint(run_dir, step, plan, spec, data)
    return hf_dir(run_dir, step)


def _data_parallel(cuda: bool, world: int):
    """FSDP with bf16 parameters on GPUs; DDP over gloo for CPU ranks; nothing for one CPU."""
    from olmo_core.config import DType
    from olmo_core.distributed.parallel import DataParallelType
    from olmo_core.train.train_module import TransformerDataParallelConfig

    if cuda:
        return TransformerDataParallelConfig(name=DataParallelType.fsdp,
                                             param_dtype=DType.bfloat16)
    if world > 1:
        return TransformerDataParallelConfig(name=DataParallelType.ddp)
    return None


def check_ranks(spec: LadderSpec, world: int) -> None:
    """Every size's batch (and microbatch) must split evenly over the data-parallel ranks."""
    for size in spec.sizes:
        if size.batch_sequences % world:
            raise InputError(f"sizes.{size.name}.batch_sequences={size.batch_sequences} does not "
                             f"divide over {world} ranks")
        micro = spec.rank_microbatch_sequences
        if micro and (size.batch_sequences // world) % micro:
            raise InputError(f"rank_microbatch_sequences={micro} does not divide the "
                             f"{size.batch_sequences // world} sequences per rank of size "
                             f"{size.name} over {world} ranks")


def train_run(plan: RunPlan, size: ModelSize, spec: LadderSpec, data: TokenData,
              run_dir: Path, progress: bool = True, watch: Watch | None = None) -> None:
    """Train (or finish) one run; checkpoints land in `run_dir/step<N>`.

    Under torchrun rank 0 prepares the folder while the others wait at a barrier. A run the
    watch stopped on drift raises `DriftStop`.
    """
    if is_main():
        check_plan(run_dir, plan)
        drop_incomplete_checkpoints(run_dir)
        save_config(run_dir, size, spec, data)
    barrier()
    with cpu_threads(spec):
        trainer = build_trainer(plan, size, spec, data, run_dir, progress, watch)
        # olmo-core's fit() installs SIGINT/SIGTERM handlers that only mark the run canceled,
        # checked every `cancel_check_interval` steps: Ctrl-C went unheard. Its handler is
        # looked up on the instance, so ours stops now (checkpoints saved so far are kept).
        trainer._handle_os_signal = raise_interrupted
        with _quiet_console():
            trainer.fit()
    stopped = trainer.callbacks.get("watch")
    if stopped is not None and stopped.stopped_at is not None:
        raise DriftStop(plan.run, stopped.stopped_at)


def drop_incomplete_checkpoints(run_dir: Path) -> None:
    """Remove checkpoints a kill interrupted, so the Trainer can save that step again.

    olmo-core renames `stepN-tmp` to `stepN` and then writes `stepN/.metadata.json`; a folder
    without it (or a leftover `-tmp`) is not a checkpoint, and would block the re-save.
    """
    for p in run_dir.glob("step*"):
        if p.is_dir() and (p.name.endswith("-tmp") or not (p / ".metadata.json").is_file()):
            shutil.rmtree(p)


@contextlib.contextmanager
def cpu_threads(spec: LadderSpec):
    """torch's intra-op threads set to the spec's `cpu_threads` while inside (CPU only)."""
    before = torch.get_num_threads()
    if spec.device == "cpu" and spec.cpu_threads:
        torch.set_num_threads(spec.cpu_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextlib.contextmanager
def _quiet_console():
    """olmo-core logs a block per metrics interval and "no checkpoint, training from scratch"
    at every fresh start; keep the progress bars readable."""
    loggers = [logging.getLogger("olmo_core.train.callbacks.console_logger"),
               logging.getLogger("olmo_core.train.trainer")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
