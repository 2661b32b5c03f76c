"""Backtests of the law methods on every split ../shared allows, and the CLI's whole-process time.

Splits of the OLMo ladder (paper runs 1xC, 2xC, 5xC, 10xC of 190M-1B; targets are held out):
  largest-size     fit 190M-760M, predict the four 1B runs
  longest-runs     fit the 1xC-5xC runs, predict every 10xC run
  both             fit 190M-760M x 1xC-5xC, predict 1B-10xC
  extra-targets    fit the paper ladder, predict the 0.5xC and 1xC-rerun runs
and the first two again on the ladder reduced to final checkpoints only, without task bpb
(the feature falls back to C4 loss), and both (what another lab's release looks like).

For `paper` and `default`: mean absolute error over tasks x target runs (points), the worst
task, the share of actuals inside the 90% interval, and the same for the task loss (the
feature): mean absolute relative error and the share inside the 90% loss interval. The
actual is a target run's final value (mean of its last 5 checkpoints). 7B-4T is not used.

Then the whole-process time of `taskladder predict --method default` for the 8 tasks against
`--method paper` in the same run (goal: default within 6x of paper).

Then the same coverage on the seeded synthetic ladders of every shape (`laws/synthetic.py`).

Usage: .venv/bin/python benchmarks/bench_backtest.py [LADDER_DIR] [--only SPLIT,...] [--no-cli]
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

import numpy as np

from taskladder.common.facts import PAPER_LADDER, PAPER_TASKS
from taskladder.data import PAPER_LADDER_DIR
from taskladder.laws.fitter import ChainedFitter
from taskladder.laws.observations import Observations
from taskladder.laws.readers import read_ladder, select_runs
from taskladder.laws.synthetic import SHAPES, shaped_ladder

DEFAULT_DIR = PAPER_LADDER_DIR
ROOT = Path(__file__).resolve().parents[1]


def final_only(obs: Observations) -> Observations:
    """Each run's last evaluated checkpoint only."""
    last = {r: obs.where(run=r).step.max() for r in obs.unique("run")}
    keep = np.array([s == last[r] for r, s in zip(obs.run, obs.step, strict=True)])
    return obs.where(keep)


def without_task_bpb(obs: Observations) -> Observations:
    return obs.where(~np.isin(obs.metric, ["bpb", "task_ce"]))


def splits(obs: Observations) -> dict[str, tuple[Observations, Observations]]:
    """name -> (ladder, targets)."""
    paper = select_runs(obs, PAPER_LADDER)
    runs = paper.unique("run")
    big = [r for r in runs if r.startswith("1B-")]
    long = [r for r in runs if r.endswith("-10xC")]

    def part(keep):
        return paper.where(run=[r for r in runs if keep(r)])

    base = {
        "largest-size": (part(lambda r: r not in big), paper.where(run=big)),
        "longest-runs": (part(lambda r: r not in long), paper.where(run=long)),
        "both": (part(lambda r: r not in big and r not in long), paper.where(run=["1B-10xC"])),
        "extra-targets": (paper, select_runs(obs, "*-0.5xC,*-1xC-rerun")),
    }
    out = dict(base)
    for name in ("largest-size", "longest-runs"):
        ladder, targets = base[name]
        out[f"{name}, final-only"] = (final_only(ladder), targets)
        out[f"{name}, no task bpb"] = (without_task_bpb(ladder), targets)
        out[f"{name}, final-only, no bpb"] = (final_only(without_task_bpb(ladder)), targets)
    return out


def evaluate(method: str, ladder: Observations, targets: Observations) -> dict:
    fitter = ChainedFitter(method)
    per_task, covered, status, loss_err, loss_covered, loss_hw = {}, [], {}, [], [], []
    for task in PAPER_TASKS:
        fit = fitter.fit(ladder, task)
        actual = targets.finals(task, fit.acc_metric, 5)
        p = fit.predict(actual.N, actual.D)
        per_task[task] = float(np.mean(np.abs(p["acc"] - actual.y)) * 100)
        covered += ((p["acc_low"] <= actual.y) & (actual.y <= p["acc_high"])).tolist()
        status[task] = fit.assess(float(actual.N.max()), float(actual.D.max()))[0]
        loss = targets.finals(fit.x_task, fit.x_metric, 5).y
        loss_err += np.abs(p["loss"] / loss - 1).tolist()
        loss_covered += ((p["loss_low"] <= loss) & (loss <= p["loss_high"])).tolist()
        loss_hw += (np.log(p["loss_high"] / p["loss_low"]) / 2).tolist()
    worst = max(per_task, key=per_task.get)
    return {
        "mae": float(np.mean(list(per_task.values()))),
        "worst": (worst, per_task[worst]),
        "coverage": float(np.mean(covered)),
        "loss_err": float(np.mean(loss_err)),
        "loss_coverage": float(np.mean(loss_covered)),
        "loss_halfwidth": float(np.mean(loss_hw)),
        "per_task": per_task,
        "status": status,
    }


def synthetic_coverage(seeds: int = 6) -> None:
    """`default`'s 90% intervals on the seeded synthetic ladders of every shape (a known law,
    the target 2x beyond the largest size), both features: how often they hold the truth."""
    print(f"synthetic shapes ({seeds} seeds x bpb and LM loss): share of truths inside")
    for shape in SHAPES:
        loss, acc = [], []
        for feature in ("bpb", "lm"):
            for seed in range(seeds):
                sh = shaped_ladder(shape, feature=feature, seed=seed)
                declared = {"schedule": "constant"} if shape == "suite-constant" else {}
                p = ChainedFitter("default", **declared).fit(sh.obs, "arc_easy").predict(*sh.target)
                loss.append(bool(p["loss_low"] <= sh.loss <= p["loss_high"]))
                acc.append(bool(p["acc_low"] <= sh.acc <= p["acc_high"]))
        print(
            f"  {shape:<16} loss 90% interval {np.mean(loss) * 100:4.0f}%, "
            f"accuracy {np.mean(acc) * 100:4.0f}%",
            flush=True,
        )


def cli_time(ladder_dir: Path, method: str) -> tuple[float, float]:
    """(wall, CPU of the child) seconds of one `taskladder predict` process."""
    cmd = [
        str(ROOT / ".venv" / "bin" / "taskladder"),
        "predict",
        "--ladder",
        str(ladder_dir),
        "--target",
        "7B-4T",
        "--method",
        method,
    ]
    t0, c0 = time.perf_counter(), _child_cpu()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - t0, _child_cpu() - c0


def _child_cpu() -> float:
    import os

    t = os.times()
    return t.children_user + t.children_system


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladder_dir", nargs="?", type=Path, default=DEFAULT_DIR,
                    help="the OLMo ladder's CSV folder (default: the vendored one)")
    ap.add_argument("--only", type=lambda v: set(v.split(",")), metavar="SPLIT,...",
                    help="only these splits (and no synthetic shapes)")
    ap.add_argument("--no-cli", dest="cli", action="store_false",
                    help="skip the whole-process CLI timing")
    args = ap.parse_args()
    only, cli, ladder_dir = args.only, args.cli, args.ladder_dir
    obs = read_ladder(ladder_dir, "olmo-csv")
    print(
        f"{'split':<34}{'method':<9}{'MAE':>6}  {'worst task':<20}{'cover90':>8}"
        f"{'loss err':>9}{'loss cover90':>13}{'loss hw':>8}  seconds"
    )
    totals: dict[str, list] = {"paper": [], "default": []}
    loss_cover: list[float] = []
    for name, (ladder, targets) in splits(obs).items():
        if only and name not in only:
            continue
        res = {}
        for method in ("paper", "default"):
            t0 = time.process_time()
            res[method] = r = evaluate(method, ladder, targets)
            secs = time.process_time() - t0
            totals[method].append(r["mae"])
            w = f"{r['worst'][0]} {r['worst'][1]:.2f}"
            print(
                f"{name:<34}{method:<9}{r['mae']:6.2f}  {w:<20}{r['coverage'] * 100:7.0f}%"
                f"{r['loss_err'] * 100:8.2f}%{r['loss_coverage'] * 100:12.0f}%"
                f"{r['loss_halfwidth'] * 100:7.2f}%  {secs:6.1f}",
                flush=True,
            )
        loss_cover.append(res["default"]["loss_coverage"])
        diff = res["default"]["mae"] - res["paper"]["mae"]
        print(
            f"{'':<34}default - paper: {diff:+.2f} points; default status: "
            + ", ".join(f"{t}={s}" for t, s in res["default"]["status"].items() if s != "ok"),
            flush=True,
        )
    p, d = np.array(totals["paper"]), np.array(totals["default"])
    print(
        f"mean over {len(p)} splits: paper {p.mean():.2f}, default {d.mean():.2f}; "
        f"worst split difference (default - paper): {np.max(d - p):+.2f} points; default 90% "
        f"loss intervals cover {np.mean(loss_cover) * 100:.0f}% on average "
        f"({np.min(loss_cover) * 100:.0f}-{np.max(loss_cover) * 100:.0f}% per split)"
    )
    if not only:
        synthetic_coverage()
    if cli:
        paper = min(cli_time(ladder_dir, "paper") for _ in range(2))
        default = cli_time(ladder_dir, "default")
        print(
            f"taskladder predict, 8 tasks, whole process: paper {paper[0]:.1f} s wall "
            f"({paper[1]:.1f} s CPU), default {default[0]:.1f} s wall ({default[1]:.1f} s CPU)"
            f" -> {default[1] / paper[1]:.1f}x CPU, {default[0] / paper[0]:.1f}x wall "
            "(goal: within 6x)"
        )


if __name__ == "__main__":
    main()
