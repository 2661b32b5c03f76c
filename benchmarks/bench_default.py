"""Does the embedded default predict? The whole `taskladder run` (train, evaluate, fit, target)
with several training seeds, and per seed and task the predicted task loss, its 90% interval,
the measured value and whether it lies inside.

    .venv/bin/python benchmarks/bench_default.py [--seeds 3] [--jobs 1] [SPEC] [--output DIR]
        [--keep]

Seed k trains the ladder and its target with the spec's seed + k (k = 0, 1, ...: no seed is
picked), each in its own folder: cold in a new `--output`; in one that holds them, only the
stages whose inputs changed run again (a new law engine re-fits without re-training). The
interval is the one the law engine reports (its backtest calibration decides the width). The
goal is the measured loss inside the interval in at least 5 of 6 (seed, task) pairs with 3
seeds. The machine, its load and each run's wall time are printed; with `--jobs` above 1 the
seeds share the CPU, so a run's wall time is not the pipeline's alone.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", nargs="?", default=None, help="pipeline spec (default: cpu-micro)")
    ap.add_argument("--seeds", type=int, default=3, help="training seeds, each a whole run")
    ap.add_argument("--jobs", type=int, default=1, help="seeds run at once (processes)")
    ap.add_argument("--output", help="output folder (default: a temporary one, removed); "
                    "a run already finished there is reused, stage by stage")
    ap.add_argument("--keep", action="store_true", help="keep the output folder")
    args = ap.parse_args()
    for flag, value in (("--seeds", args.seeds), ("--jobs", args.jobs)):
        if value < 1:
            print(f"{flag}: must be at least 1, got {value}", file=sys.stderr)
            return 2

    from taskladder import stages
    from taskladder.config import load_spec

    base = load_spec(args.spec)
    if not (base.ladder.trained and base.target.train):
        print(f"spec {base.name}: bench_default needs a trained ladder and a trained target",
              file=sys.stderr)
        return 2
    out = Path(args.output or tempfile.mkdtemp(prefix="bench-default-"))
    seed0 = stages.ladder_training(base).seed
    print(f"taskladder run {base.name} x {args.seeds} seeds ({args.jobs} at once): "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    work = [(args.spec, seed0 + k, out / f"seed-{seed0 + k}") for k in range(args.seeds)]
    if args.jobs == 1:
        runs = [run_seed(*w) for w in work]
    else:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(run_seed, *zip(*work, strict=True)))
    rows = [row for _, _, _, _, seed_rows in runs for row in seed_rows]

    print(f"{'seed':>6s} {'task':12s} {'predicted':>9s} {'90% interval':>17s} {'measured':>9s} "
          f"{'error':>7s}  inside  loss status")
    inside = 0
    for seed, task, pred, lo, hi, status, value in rows:
        if value is None:
            print(f"{seed:6d} {task:12s} {pred:9.3f} [{lo:6.3f}, {hi:6.3f}]  (not measured)")
            continue
        ok = lo <= value <= hi
        inside += ok
        print(f"{seed:6d} {task:12s} {pred:9.3f} [{lo:6.3f}, {hi:6.3f}] {value:9.3f} "
              f"{100 * (pred - value) / value:+6.1f}%  {'yes' if ok else 'NO':6s}  {status}")
    print(f"inside the 90% interval: {inside} of {len(rows)} (seed, task) pairs")
    for seed, wall, load0, load1, _ in runs:
        print(f"seed {seed}: taskladder run {wall:.0f} s wall (load average {load0:.1f} at the "
              f"start, {load1:.1f} at the end)")
    if not (args.keep or args.output):
        shutil.rmtree(out, ignore_errors=True)
    return 0


def run_seed(spec_name: str | None, seed: int, folder: Path) -> tuple:
    """One whole `taskladder run` with this training seed in `folder`: (seed, wall seconds,
    load average before and after, rows of (seed, task, predicted, low, high, loss status,
    measured))."""
    from taskladder import stages
    from taskladder.common.echo import quiet
    from taskladder.config import load_spec
    from taskladder.outputs import Predicted, TargetScored
    from taskladder.pipeline import run_pipeline
    from taskladder.verdict import measured

    base = load_spec(spec_name)
    ladder = base.ladder.model_dump(mode="python", by_alias=True, exclude_none=True)
    ladder["overrides"] = {**ladder.get("overrides", {}), "seed": seed}
    spec = base.with_overrides(ladder=ladder, output_dir=str(folder),
                               tracking_uri=f"sqlite:///{folder / 'mlflow.db'}")
    stages.preflight(spec)
    load0, t0 = os.getloadavg()[0], time.perf_counter()
    ctx, _ = run_pipeline(spec, stages.STAGES, echo=quiet)
    wall = time.perf_counter() - t0
    report = ctx.output(Predicted).document()
    target = ctx.output(TargetScored).observations()
    rows = []
    for task, e in report["tasks"].items():
        p = e["predicted"]
        value = measured(target, e["feature"]["task"], e["feature"]["metric"])
        rows.append((seed, task, p["loss"], p["loss_low"], p["loss_high"],
                     e.get("loss_status", "-"), None if value is None else value[0]))
    return seed, wall, load0, os.getloadavg()[0], rows


if __name__ == "__main__":
    sys.exit(main())
