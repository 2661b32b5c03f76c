"""Wall time per stage of `taskladder run` (default: the embedded cpu-micro spec), cold and re-run.

    .venv/bin/python benchmarks/bench_pipeline.py [SPEC] [--output DIR] [--keep]

Runs the spec from an empty output folder, then again on the same folder (everything already
done: the re-run must skip the work) and prints each stage's seconds for both runs, the share
of the total, and the re-run as a ratio of the cold run. The machine is named in the output.
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
    args = ap.parse_args()

    from taskladder import stages
    from taskladder.config import load_spec
    from taskladder.pipeline import run_pipeline

    out = Path(args.output or tempfile.mkdtemp(prefix="bench-pipeline-"))
    if out.exists() and any(out.iterdir()):
        print(f"{out} is not empty: the cold run needs an empty folder", file=sys.stderr)
        return 2
    spec = load_spec(args.spec).with_overrides(output_dir=str(out), tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    stages.preflight(spec)
    quiet = lambda line: None  # noqa: E731 - the table below is the output
    timings = []
    for label in ("cold", "re-run"):
        t0 = time.perf_counter()
        ctx, reports = run_pipeline(spec, stages.STAGES, echo=quiet)
        timings.append((label, time.perf_counter() - t0, {r.name: r.seconds for r in reports}))

    (_, cold_total, cold), (_, warm_total, warm) = timings
    print(f"taskladder run {spec.name}: {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, torch threads {_torch_threads()}")
    print(f"{'stage':14s} {'cold s':>9s} {'share':>7s} {'re-run s':>9s} {'re-run/cold':>12s}")
    for name, sec in cold.items():
        print(f"{name:14s} {sec:9.1f} {sec / cold_total:7.1%} {warm[name]:9.2f} "
              f"{warm[name] / sec if sec else float('nan'):12.3f}")
    print(f"{'total':14s} {cold_total:9.1f} {1:7.0%} {warm_total:9.2f} {warm_total / cold_total:12.3f}")
    for line in stages.final_lines(ctx, reports):
        print(line)
    if not (args.keep or args.output):
        shutil.rmtree(out, ignore_errors=True)
    return 0


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
