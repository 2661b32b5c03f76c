"""Training speed: olmo-core's Trainer vs a plain PyTorch loop; the cpu-micro ladder's wall time.

For two micro sizes, the ladder's own Trainer (built by `taskladder.training.run`) trains a
run while a callback records each step's batch and the time between steps; then a plain loop
(same model init, same AdamW, same batches, no Trainer) trains on exactly those batches.
Rounds alternate the two to share the machine's noise; the median of each is reported and
the ratio olmo-core / plain is the figure (goal >= 0.95). Both wall-clock and process
CPU-time rates are shown: on a shared machine the CPU-time ratio is the steadier one. Then the
whole cpu-micro ladder is trained from scratch in a temp folder and its wall time compared
with the ETA it announced.

    .venv/bin/python benchmarks/bench_training.py [--steps 40] [--rounds 3] [--skip-ladder]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from olmo_core.train.callbacks import Callback
from olmo_core.utils import seed_all

from taskladder.common.echo import quiet
from taskladder.training.ladder import cache_dir, estimate_seconds, train_ladder
from taskladder.training.model import model_config
from taskladder.training.run import build_trainer, check_plan, cpu_threads, save_config
from taskladder.training.spec import LadderSpec
from taskladder.training.speed import plain_train

WARMUP_STEPS = 3


@dataclass
class StepRecorder(Callback):
    """Keeps every batch and the wall time between consecutive steps."""

    batches: list[torch.Tensor] = field(default_factory=list)
    times: list[tuple[float, float]] = field(default_factory=list)

    def pre_step(self, batch):
        self.batches.append(batch["input_ids"].clone())

    def post_step(self):
        self.times.append((time.perf_counter(), time.process_time()))


def olmo_core_round(spec: LadderSpec, size, steps: int, data, root: Path):
    """Train `steps` steps with the ladder's Trainer; (wall, CPU) tokens/s after warm-up."""
    plan = spec.run_plan(size, 1.0)
    plan = type(plan)(**{**plan.__dict__, "steps": steps, "tokens": steps * plan.batch_tokens,
                         "checkpoint_steps": [steps]})
    run_dir = Path(tempfile.mkdtemp(dir=root))
    check_plan(run_dir, plan)
    save_config(run_dir, size, spec, data)
    rec = StepRecorder()
    trainer = build_trainer(plan, size, spec, data, run_dir, progress=False)
    trainer.add_callback("recorder", rec)
    trainer.fit()
    # steps WARMUP..steps-1: the last one also checkpoints and exports, so it is left out
    (w0, c0), (w1, c1) = rec.times[WARMUP_STEPS - 1], rec.times[steps - 2]
    tokens = (steps - 1 - WARMUP_STEPS) * plan.batch_tokens
    return (tokens / (w1 - w0), tokens / (c1 - c0)), rec.batches, plan


def plain_round(spec: LadderSpec, size, batches: list[torch.Tensor], lr: float):
    """The same steps in a plain loop: (wall, CPU) tokens/s."""
    seed_all(spec.seed)
    model = model_config(size, spec.vocab_size).build(init_device="cpu")
    plain_train(model, batches[:WARMUP_STEPS], lr)
    c0 = time.process_time()
    tokens, seconds, _ = plain_train(model, batches[WARMUP_STEPS:-1], lr)
    return tokens / seconds, tokens / (time.process_time() - c0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--skip-ladder", action="store_true")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")

    from taskladder.training.corpus import prepare_tokens

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        spec = LadderSpec.cpu_micro(output_dir=str(root / "ladder"))
        data = prepare_tokens(spec.corpus, spec.tokenizer, spec.seed, cache_dir())
        print(f"machine: CPU, {torch.get_num_threads()} torch threads by default, "
              f"{spec.cpu_threads or 'default'} while training; torch {torch.__version__}")
        for size in (spec.sizes[0], spec.sizes[-1]):
            olmo, plain = [], []
            for i in range(args.rounds + 1):  # round 0 warms up (lazy imports, allocator)
                with cpu_threads(spec):  # both sides use the spec's torch threads
                    tps, batches, plan = olmo_core_round(spec, size, args.steps, data, root)
                    base = plain_round(spec, size, batches, plan.lr)
                if i:
                    olmo.append(tps)
                    plain.append(base)
            for i, clock in enumerate(("wall", "CPU-time")):
                o = statistics.median(r[i] for r in olmo)
                p = statistics.median(r[i] for r in plain)
                rounds = ", ".join(f"{a[i] / b[i]:.2f}" for a, b in zip(olmo, plain, strict=True))
                print(f"{size.name} (N={plan.N:,.0f}, {plan.batch_tokens} tokens/step), {clock}: "
                      f"olmo-core {o:,.0f} tok/s, plain PyTorch {p:,.0f} tok/s, "
                      f"ratio {o / p:.3f} (per round: {rounds})", flush=True)

        if not args.skip_ladder:
            eta = estimate_seconds(spec, spec.plan())
            start = time.perf_counter()
            results = train_ladder(spec, progress=False, echo=quiet)
            wall = time.perf_counter() - start
            ckpts = sum(len(r.checkpoints) for r in results)
            tokens = sum(r.tokens for r in results)
            print(f"cpu-micro ladder: {len(results)} runs, {ckpts} exported checkpoints, "
                  f"{tokens:,} tokens: wall {wall:.0f} s (announced ETA {eta:.0f} s, "
                  f"ratio wall/ETA {wall / eta:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
