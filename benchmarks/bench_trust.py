"""How the trust rule and the 90% intervals fare on targets the fits never saw (README goal:
at least half of the task predictions trusted, no trusted miss above 5 points, intervals
covering 85-95%).

Held-out splits of the OLMo ladder smaller than bench_backtest's, so that the targets lie as
far beyond the ladder as a user's do: fit 190M-370M and predict the 760M and 1B runs; fit the
1xC-2xC runs and predict the 5xC and 10xC runs; each on the whole ladder, its final
checkpoints only, without task bpb, and both (8 ladders x 8 tasks x 4 targets = 256 task
predictions of `default`). Per ladder and overall: the share trusted (status ok), the
trusted misses above 5 points, the share of actual accuracies inside the 90% interval and of
actual task losses inside the 90% loss interval (of every row, and of the distinct loss
predictions: where the feature is C4 loss, tasks that share its step-1 fit share one
prediction, which the rows count once per task), the mean absolute error of the trusted and
the flagged predictions, the share of loss predictions trusted and their coverage.
7B-4T is not used.

`--check`: the same on two splits the calibration was not tuned on (370M-760M -> 1B,
2-5xC -> 10xC). `--reasons`: then, for the flagged predictions of the final-only ladders,
which rules flagged them (`RULES`) and how they fared: how many, how many within 5 points
of the actual, their mean and largest error (a flag costs the user a prediction).

Usage: .venv/bin/python benchmarks/bench_trust.py [LADDER_DIR] [--check] [--reasons]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from bench_backtest import final_only, without_task_bpb

from taskladder.common.facts import PAPER_LADDER, PAPER_TASKS
from taskladder.data import PAPER_LADDER_DIR
from taskladder.laws.fitter import ChainedFitter
from taskladder.laws.observations import Observations
from taskladder.laws.readers import read_ladder, select_runs

MISS = 5.0  # points
# The rule behind a reason of `trust.assess`, by a phrase of its text.
RULES = {
    "90% interval": "half-width > 5 points",
    "doublings of N": "beyond the backtests' reach",
    "at chance": "no signal",
    "does not rise": "no signal",
    "points beyond a ladder that rises": "sigmoid beyond the ladder",
    "a ladder of": "small ladder",
    "loss:": "its loss",
    "less N and no more D": "worse than a dominated run",
    "degenerate": "degenerate fit",
}


def splits(obs: Observations, check: bool = False) -> dict[str, tuple[Observations, Observations]]:
    """The bench's splits; `check`: two others, to check a change on splits it was not
    tuned on (two sizes one step further up, two lengths one step further out)."""
    paper = select_runs(obs, PAPER_LADDER)
    runs = paper.unique("run")

    def part(start=(), end=()):
        return paper.where(run=[r for r in runs if r.startswith(start) or r.endswith(end)])

    base = {
        "190M-370M -> 760M, 1B": (part(("190M-", "370M-")), part(("760M-", "1B-"))),
        "1-2xC -> 5xC, 10xC": (part(end=("-1xC", "-2xC")), part(end=("-5xC", "-10xC"))),
    }
    if check:
        base = {
            "370M-760M -> 1B": (part(("370M-", "760M-")), part(("1B-",))),
            "2-5xC -> 10xC": (part(end=("-2xC", "-5xC")), part(end=("-10xC",))),
        }
    out = {}
    for name, (ladder, targets) in base.items():
        out[name] = (ladder, targets)
        out[f"{name}, final-only"] = (final_only(ladder), targets)
        out[f"{name}, no task bpb"] = (without_task_bpb(ladder), targets)
        out[f"{name}, final-only, no bpb"] = (final_only(without_task_bpb(ladder)), targets)
    return out


def judge(ladder: Observations, targets: Observations) -> list[dict]:
    """One row per task x target run: status, error (points), covered, loss covered."""
    fitter, rows = ChainedFitter("default"), []
    for task in PAPER_TASKS:
        fit = fitter.fit(ladder, task)
        acc = targets.finals(task, fit.acc_metric, 5)
        loss = targets.finals(fit.x_task, fit.x_metric, 5).as_dict()
        p = fit.predict(acc.N, acc.D)
        for i, run in enumerate(acc.runs):
            judged = fit.statuses(float(acc.N[i]), float(acc.D[i]))
            rows.append({
                "status": judged["acc"][0],
                "rules": " + ".join(sorted({
                    next((v for k, v in RULES.items() if k in why), why) for why in judged["acc"][1]
                })),
                "loss_status": judged["loss"][0],
                "error": abs(float(p["acc"][i] - acc.y[i])) * 100,
                "covered": bool(p["acc_low"][i] <= acc.y[i] <= p["acc_high"][i]),
                "loss_covered": bool(p["loss_low"][i] <= loss[run] <= p["loss_high"][i]),
                "loss_key": (fit.x_task, fit.x_metric, run, round(float(p["loss"][i]), 9)),
            })
    return rows


def summary(rows: list[dict]) -> str:
    ok = [r for r in rows if r["status"] == "ok"]
    flagged = [r for r in rows if r["status"] != "ok"]
    misses = [r["error"] for r in ok if r["error"] > MISS]

    loss_ok = [r for r in rows if r["loss_status"] == "ok"]
    loss_ok_cov = np.mean([r["loss_covered"] for r in loss_ok]) * 100 if loss_ok else np.nan

    distinct = {r["loss_key"]: r["loss_covered"] for r in rows}

    def mae(rs):
        return f"{np.mean([r['error'] for r in rs]):.2f}" if rs else "-"

    return (
        f"{len(rows):4d} {len(ok) / len(rows) * 100:7.0f}% {len(misses):7d}"
        f"{(' (' + ', '.join(f'{m:.1f}' for m in misses) + ')') if misses else '':<14}"
        f"{np.mean([r['covered'] for r in rows]) * 100:7.0f}%"
        f"{np.mean([r['loss_covered'] for r in rows]) * 100:9.0f}%"
        f"{np.mean(list(distinct.values())) * 100:6.0f}% of {len(distinct):<4d}"
        f"{mae(ok):>10}{mae(flagged):>10}"
        f"{len(loss_ok) / len(rows) * 100:9.0f}%{loss_ok_cov:9.0f}%"
    )


def by_rule(rows: list[dict]) -> str:
    """The flagged rows by the rules that flagged them: n, within 5 points, mean and max error."""
    groups: dict[str, list[float]] = {}
    for r in rows:
        if r["status"] != "ok":
            groups.setdefault(r["rules"], []).append(r["error"])
    lines = [f"{'flagged by':<60}{'n':>4}{'within 5':>10}{'MAE':>7}{'max':>7}"]
    for rule, errors in sorted(groups.items(), key=lambda g: -len(g[1])):
        e = np.array(errors)
        lines.append(f"{rule:<60}{len(e):4d}{np.sum(e <= MISS):10d}{e.mean():7.2f}{e.max():7.1f}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ladder_dir", nargs="?", type=Path, default=PAPER_LADDER_DIR,
                    help="the OLMo ladder's CSV folder (default: the vendored one)")
    ap.add_argument("--check", action="store_true",
                    help="two splits the calibration was not tuned on")
    ap.add_argument("--reasons", action="store_true",
                    help="which rules flagged the final-only ladders' predictions")
    args = ap.parse_args()
    obs = read_ladder(args.ladder_dir, "olmo-csv")
    print(f"{'ladder':<40}{'n':>4} {'trusted':>8} {'misses > 5':<21}{'cover90':>8}"
          f"{'loss cov':>9}{'distinct (n)':>15}{'MAE ok':>10}{'MAE flag':>10}"
          f"{'loss ok':>10}{'its cov':>10}")
    every, final_only = [], []
    for name, (ladder, targets) in splits(obs, args.check).items():
        rows = [dict(r, loss_key=(name, *r["loss_key"])) for r in judge(ladder, targets)]
        every += rows
        final_only += rows if "final-only" in name else []
        print(f"{name:<40}{summary(rows)}", flush=True)
    print(f"{'all':<40}{summary(every)}")
    if args.reasons:
        print(f"\nflagged predictions of the final-only ladders ({len(final_only)} in all)")
        print(by_rule(final_only))


if __name__ == "__main__":
    main()
