"""Wall time per stage of `taskladder run` (default: the embedded cpu-micro spec), cold and
re-run, and the evaluation stage against one lm-eval call per checkpoint.

    .venv/bin/python benchmarks/bench_pipeline.py [SPEC] [--output DIR] [--keep]
        [--eval-tasks arc_easy,hellaswag,piqa] [--eval-limit 24]

1. Runs the spec from an empty output folder, then again on the same folder (everything
   verified: every stage must be skipped), and prints each stage's seconds for both runs.
2. Scores the cold run's ladder checkpoints twice on the same work (by default its checkpoints,
   34 for cpu-micro, x 3 tasks x 24 questions), into fresh folders: once the way the stage does
   (`stages._score`), once with the harness's `evaluate` per checkpoint (the baseline), and
   prints both times and the speed-up. The machine and its load are named in the output.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default=None)
    ap.add_argument("--output", help="output folder (default: a temporary one, removed)")
    ap.add_argument("--keep", action="store_true", help="keep the output folder")
    ap.add_argument("--eval-tasks", default="arc_easy,hellaswag,piqa")
    ap.add_argument("--eval-limit", type=int, default=24)
    args = ap.parse_args()

    from taskladder import stages
    from taskladder.common.echo import quiet
    from taskladder.config import load_spec
    from taskladder.pipeline import run_pipeline

    out = Path(args.output or tempfile.mkdtemp(prefix="bench-pipeline-"))
    if out.exists() and any(out.iterdir()):
        print(f"{out} is not empty: the cold run needs an empty folder", file=sys.stderr)
        return 2
    spec = load_spec(args.spec).with_overrides(output_dir=str(out),
                                               tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    stages.preflight(spec)
    runs = []
    for _ in ("cold", "re-run"):
        t0 = time.perf_counter()
        ctx, reports = run_pipeline(spec, stages.STAGES, echo=quiet)  # the tables are output
        runs.append((time.perf_counter() - t0, reports))

    (cold_total, cold), (warm_total, warm) = runs
    print(f"taskladder run {spec.name}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}, "
          f"torch threads {_torch_threads()}")
    print(f"{'stage':14s} {'cold s':>9s} {'share':>7s} {'re-run s':>9s}  re-run")
    for c, w in zip(cold, warm, strict=True):
        print(f"{c.name:14s} {c.seconds:9.1f} {c.seconds / cold_total:7.1%} {w.seconds:9.2f}  "
              f"{'ran' if w.ran else 'skipped'} ({w.why})")
    print(f"{'total':14s} {cold_total:9.1f} {1:7.0%} {warm_total:9.2f}")

    if spec.ladder.trained:
        _bench_eval(ctx, spec, args.eval_tasks.split(","), args.eval_limit, out)
    if not (args.keep or args.output):
        shutil.rmtree(out, ignore_errors=True)
    return 0


def _bench_eval(ctx, spec, tasks: list[str], limit: int, out: Path) -> None:
    """The stage's scoring against one `evaluate` call per checkpoint, same work, fresh folders."""
    from taskladder import stages
    from taskladder.harness_ext.runner import evaluate
    from taskladder.outputs import Trained

    models = list(ctx.output(Trained).models)
    bench = spec.with_overrides(evaluate={**spec.evaluate.model_dump(), "tasks": tasks,
                                          "limit": limit})
    ctx.spec = bench
    t0 = time.perf_counter()
    stages._score(ctx, models, out / "bench-eval" / "stage")
    stage_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for i, m in enumerate(models):
        evaluate(m.hf_dir, tasks=tasks, limit=limit, output=out / "bench-eval" / "each" / str(i),
                 backend=bench.evaluate.backend, batch_size=bench.evaluate.batch_size)
    each_s = time.perf_counter() - t0
    print(f"\nevaluation: {len(models)} checkpoints x {len(tasks)} tasks x {limit} questions, "
          f"backend {bench.evaluate.backend}, load average {os.getloadavg()[0]:.1f}")
    print(f"  the stage (stages._score)        {stage_s:7.1f} s")
    print(f"  one evaluate call per checkpoint {each_s:7.1f} s")
    print(f"  speed-up                         {each_s / stage_s:7.2f}x")


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
