"""Train a whole ladder: validate, prepare data, announce the ETA, train/resume, export.

`train_ladder(spec)` is what the pipeline and `taskladder train` call. It is idempotent:
finished runs (a `result.json` next to their checkpoints) are read back, partial ones resume
from their last checkpoint, and missing Hugging Face exports are made.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

from taskladder.common.echo import Echo, echo, quiet
from taskladder.common.errors import InputError
from taskladder.common.io import write_json
from taskladder.common.meta import Checkpoint
from taskladder.training.corpus import (
    TokenData,
    check_corpus,
    load_tokenizer,
    prepare_tokens,
    tokenizer_source,
)
from taskladder.training.export import export_checkpoint, hf_dir
from taskladder.training.spec import LadderSpec, RunPlan

RESULT_FILE = "result.json"
# Measured on 2 cores for micro runs: per kept checkpoint (save, val loss, HF export) and per
# run (Trainer build, olmo-core's dry-run batch, data loader setup).
CHECKPOINT_SECONDS_CPU = 1.5
RUN_SECONDS_CPU = 2.0


@dataclass(frozen=True)
class RunResult:
    """A finished run: what it trained and its exported checkpoints (last = final)."""

    run: str
    size: str
    N: float
    multiplier: float
    steps: int
    tokens: int
    run_dir: str
    checkpoints: list[Checkpoint]
    train_seconds: float

    @classmethod
    def from_json(cls, data: dict) -> RunResult:
        return cls(**{**data, "checkpoints": [Checkpoint.from_dict(c)
                                               for c in data["checkpoints"]]})


def runs_dir(spec: LadderSpec) -> Path:
    return spec.out_dir() / "runs"


def check_ready(spec: LadderSpec) -> None:
    """Everything that can fail before compute: corpus files and format, tokenizer."""
    check_corpus(spec.corpus)
    if spec.corpus.kind != "wiki-summaries" and spec.corpus.file_kind() == "numpy" \
            and spec.tokenizer.kind == "bpe":
        raise InputError(f"corpus.paths: {spec.corpus.paths[0]!r} holds token ids: give the "
                         "tokenizer that made them (tokenizer.kind 'path' or 'olmo')")
    src = tokenizer_source(spec.tokenizer)
    if src is None:
        return
    if not src.exists():
        raise InputError(f"tokenizer.path: {str(src)!r} does not exist "
                         "(tokenizers are loaded offline)")
    tok = load_tokenizer(src)
    limit = tok.model_max_length if src.is_dir() else spec.tokenizer.model_max_length
    if limit < spec.sequence_length:
        raise InputError(f"sequence_length={spec.sequence_length} is longer than tokenizer "
                         f"{str(src)!r} supports (model_max_length={limit})")
    if len(tok) > spec.tokenizer.vocab_size:
        raise InputError(f"tokenizer.vocab_size={spec.tokenizer.vocab_size} is smaller than the "
                         f"tokenizer's {len(tok)} tokens ({src})")


def check_data(spec: LadderSpec, plans: list[RunPlan], data: TokenData,
               echo: Echo = echo) -> None:
    """Enough tokens for one batch and one validation window; warn about repeated epochs."""
    if data.vocab_size > spec.vocab_size:
        raise InputError(f"tokenizer.vocab_size={spec.tokenizer.vocab_size}: the tokenizer "
                         f"has {data.vocab_size} tokens")
    if data.val_tokens < spec.sequence_length:
        raise InputError(f"corpus.val_fraction={spec.corpus.val_fraction}: the validation split "
                         f"has {data.val_tokens} tokens, fewer than sequence_length="
                         f"{spec.sequence_length}")
    windows = data.train_tokens // spec.sequence_length
    for p in plans:
        if windows < p.batch_sequences:
            raise InputError(f"sequence_length={spec.sequence_length}: the corpus has "
                             f"{windows} training sequences, fewer than one batch of run "
                             f"{p.run} ({p.batch_sequences})")
        epochs = p.tokens / (windows * spec.sequence_length)
        if epochs > 1:
            msg = (f"run {p.run} needs {p.tokens:,} tokens but the corpus has "
                   f"{windows * spec.sequence_length:,}: {epochs:.1f} epochs (data repeats)")
            warnings.warn(msg, stacklevel=2)
            echo(f"warning: {msg}")


def estimate_seconds(spec: LadderSpec, plans: list[RunPlan]) -> float:
    """Wall-time estimate of `plans`: a few measured steps per size on CPU, else the plan's."""
    if spec.device != "cpu":
        return sum(p.est_seconds for p in plans)
    from taskladder.training.run import cpu_threads
    from taskladder.training.speed import probe_tokens_per_second

    sizes = {s.name: s for s in spec.sizes}
    with cpu_threads(spec):
        speed = {name: probe_tokens_per_second(sizes[name], spec)
                 for name in sorted({p.size for p in plans})}
    return sum(p.tokens / speed[p.size] + CHECKPOINT_SECONDS_CPU * len(p.checkpoint_steps)
               + RUN_SECONDS_CPU for p in plans)


def train_ladder(spec: LadderSpec, progress: bool = True, echo: Echo = echo,
                 runs: list[str] | None = None, watch=None) -> list[RunResult]:
    """Train every run of the spec (or those named in `runs`), skipping finished ones, and
    export their checkpoints; `watch` (`callbacks.Watch`) judges each kept checkpoint while a
    run trains and may stop it (`DriftStop`).

    Under torchrun every rank trains; rank 0 alone exports and writes result.json, after a
    barrier, and the other ranks read the result back after a second one.
    """
    from taskladder.training.run import (
        barrier,
        ensure_environment,
        is_main,
        rank0_group,
        train_run,
        world_size,
    )

    check_ready(spec)
    plans = select_plans(spec.plan(), runs)
    if world_size() > 1:
        ensure_environment(spec)
    if is_main():  # one process builds the tokenizer and token files; the others reuse them
        data = prepare_tokens(spec.corpus, spec.tokenizer, spec.seed, cache_dir())
    barrier()
    if not is_main():
        data = prepare_tokens(spec.corpus, spec.tokenizer, spec.seed, cache_dir())
    check_data(spec, plans, data, echo if is_main() else quiet)
    sizes = {s.name: s for s in spec.sizes}
    todo = [p for p in plans if not (runs_dir(spec) / p.run / RESULT_FILE).is_file()]
    if todo and is_main():
        eta = estimate_seconds(spec, todo)
        echo(f"ladder {spec.name}: {len(todo)} of {len(plans)} runs to train, "
            f"{sum(p.tokens for p in todo):,} tokens, ETA ~{_duration(eta)}")
    solo = rank0_group()
    results, spent, flops_done = [], 0.0, 0.0
    for plan in plans:
        run_dir = runs_dir(spec) / plan.run
        done = run_dir / RESULT_FILE
        if done.is_file():
            results.append(read_result(done))
            continue
        start = time.perf_counter()
        train_run(plan, sizes[plan.size], spec, data, run_dir, progress, watch)
        barrier()  # every rank's last checkpoint is written
        if is_main():
            result = _finish(plan, spec, data, run_dir, time.perf_counter() - start, solo)
            write_json(done, asdict(result), indent=1)
        barrier()  # result.json is there
        result = read_result(done)
        results.append(result)
        spent += result.train_seconds
        flops_done += plan.flops
        left = [p for p in todo if p not in plans[: plans.index(plan) + 1]]
        if left and is_main():  # re-estimate from what this machine really did (FLOPs-weighted)
            eta = spent / flops_done * sum(p.flops for p in left)
            echo(f"ladder {spec.name}: {plan.run} done; {len(left)} runs left, ~{_duration(eta)}")
    return results


def select_plans(plans: list[RunPlan], runs: list[str] | None) -> list[RunPlan]:
    """The plans named in `runs` (all when None); an unknown name is bad input."""
    if runs is None:
        return plans
    names = {p.run for p in plans}
    unknown = [r for r in runs if r not in names]
    if unknown:
        raise InputError(f"--only: {unknown[0]!r} is not a run of this ladder "
                         f"({', '.join(sorted(names))})")
    return [p for p in plans if p.run in runs]


def read_result(path: Path) -> RunResult:
    return RunResult.from_json(json.loads(Path(path).read_text()))


def _finish(plan: RunPlan, spec: LadderSpec, data: TokenData, run_dir: Path,
            seconds: float, group=None) -> RunResult:
    ckpts = []
    for step in plan.checkpoint_steps:
        if not (run_dir / f"step{step}").is_dir():
            raise RuntimeError(f"run {plan.run}: checkpoint step{step} is missing after training")
        meta = export_checkpoint(run_dir, step, plan, spec, data, process_group=group)
        ckpts.append(Checkpoint(hf_dir=str(hf_dir(run_dir, step)), meta=meta))
    return RunResult(run=plan.run, size=plan.size, N=plan.N, multiplier=plan.multiplier,
                     steps=plan.steps, tokens=plan.tokens, run_dir=str(run_dir),
                     checkpoints=ckpts, train_seconds=seconds)


def cache_dir() -> Path:
    """Tokenizers and token arrays, shared by every ladder (content-addressed)."""
    root = os.environ.get("TASKLADDER_CACHE") or Path.home() / ".cache" / "taskladder"
    return Path(root) / "corpus"


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:,.1f} h"

