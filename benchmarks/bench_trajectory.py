"""Trajectory laws: backtests on the OLMo ladder, then the 7B trajectory as a check.

Backtests (the design's yardstick): per task, the paper ladder (1xC-10xC of 190M-1B) without
its largest size predicts that size's checkpoints from 10% of each run's schedule on
(`largest-size`), and without its two largest sizes predicts theirs (`two-largest`). Each
split's band is calibrated on the OTHER split's scores only, so the coverage is out of
sample. Reported per task: mean absolute error of the task loss (relative, %) and of the
accuracy (points), and the share of checkpoints inside the 90% band; also the final-point
law read at the tokens seen (what ignoring the schedule gives) as a baseline.

7B check (run last, nothing was tuned on it): the law fitted on the whole paper ladder predicts
`peteish7_eval_full` (cosine to 10% set for 5T tokens, evaluated to 3.9T), every checkpoint
from 10% of the planned total on.

Usage: .venv/bin/python benchmarks/bench_trajectory.py [LADDER_DIR] [--tasks LIST]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from taskladder.common.facts import PAPER_LADDER, PAPER_TASKS
from taskladder.data import PAPER_LADDER_DIR
from taskladder.laws import trajectory as tj
from taskladder.laws.readers import read_ladder, select_runs
from taskladder.laws.step1 import nd_loss


def backtest_rows(obs, task: str) -> list[dict]:
    bt = tj.backtest(obs, task)
    rows = []
    for split, other in (("largest-size", "two-largest"), ("two-largest", "largest-size")):
        if split not in bt or other not in bt:
            continue
        cal = bt[other].values()
        q = tj.loss_quantile(list(cal), 0.9)
        qa = tj.conformal(np.concatenate([np.abs(r["acc"] - r["acc_at_loss"]) for r in cal]), 0.9)
        runs = bt[split].values()
        loss = np.concatenate([r["loss"] for r in runs])
        pred = np.concatenate([r["loss_pred"] for r in runs])
        half = np.concatenate([np.full(len(r["loss"]), q * r["u"]) for r in runs])
        acc = np.concatenate([r["acc"] for r in runs])
        accp = np.concatenate([r["acc_pred"] for r in runs])
        lo = np.concatenate([tj.sigmoid(r["step2"], r["loss_pred"] * np.exp(q * r["u"])) - qa
                             for r in runs])
        hi = np.concatenate([tj.sigmoid(r["step2"], r["loss_pred"] * np.exp(-q * r["u"])) + qa
                             for r in runs])
        rows.append({
            "task": task, "split": split,
            "loss_mae_pct": float(np.mean(np.abs(pred / loss - 1)) * 100),
            "loss_in_band": float(np.mean(np.abs(np.log(loss / pred)) <= half)),
            "acc_mae_pts": float(np.mean(np.abs(accp - acc)) * 100),
            "acc_in_band": float(np.mean((acc >= lo) & (acc <= hi))),
            "n": len(loss),
        })
    return rows


def target_rows(obs, target, task: str) -> dict:
    law = tj.fit_trajectory(obs, task)
    sched = tj.Schedule(5e12)
    loss = target.series(task, "bpb")
    (idx, lv), = loss.values()
    (aidx, av), = target.series(task, law.acc_metric).values()
    D, N = target.D[idx], target.N[idx][0]
    frac, why = sched.place(D, law.fractions[0])
    keep = np.array([w is None for w in why])
    p = law.predict(N, D[keep], frac[keep])
    base = nd_loss(np.array(law.params[-1]), N, D[keep])  # the final law, schedule ignored
    lv, av = lv[keep], av[keep]
    return {
        "task": task, "n": int(keep.sum()),
        "loss_mae_pct": float(np.mean(np.abs(p["bpb"] / lv - 1)) * 100),
        "baseline_loss_mae_pct": float(np.mean(np.abs(base / lv - 1)) * 100),
        "loss_in_band": float(np.mean((lv >= p["bpb_low"]) & (lv <= p["bpb_high"]))),
        "acc_mae_pts": float(np.mean(np.abs(p["acc"] - av)) * 100),
        "acc_in_band": float(np.mean((av >= p["acc_low"]) & (av <= p["acc_high"]))),
        "band_pct": float((np.exp(law.loss_q * law.distance(N)) - 1) * 100),
    }


def main(argv: list[str]) -> int:
    path = argv[0] if argv and not argv[0].startswith("--") else PAPER_LADDER_DIR
    tasks = argv[argv.index("--tasks") + 1].split(",") if "--tasks" in argv else PAPER_TASKS
    t0 = time.perf_counter()
    everything = read_ladder(path)
    obs = select_runs(everything, PAPER_LADDER)
    print("backtests (band calibrated on the other split)")
    print(f"{'task':<15}{'split':<14}{'n':>5}{'loss MAE %':>12}{'in band':>9}"
          f"{'acc MAE pts':>13}{'in band':>9}")
    bt = []
    for task in tasks:
        for r in backtest_rows(obs, task):
            bt.append(r)
            print(f"{task:<15}{r['split']:<14}{r['n']:>5}{r['loss_mae_pct']:>12.2f}"
                  f"{r['loss_in_band']:>9.0%}{r['acc_mae_pts']:>13.2f}{r['acc_in_band']:>9.0%}")
    for k in ("loss_mae_pct", "loss_in_band", "acc_mae_pts", "acc_in_band"):
        print(f"  mean {k}: {np.mean([r[k] for r in bt]):.3f}")
    print("\n7B check: peteish7_eval_full (cosine set for 5T), checkpoints from 10% on")
    target = select_runs(everything, "peteish7_eval_full")
    print(f"{'task':<15}{'n':>5}{'loss MAE %':>12}{'final-law %':>13}{'band ±%':>9}"
          f"{'in band':>9}{'acc MAE pts':>13}{'in band':>9}")
    rows = []
    for task in tasks:
        r = target_rows(obs, target, task)
        rows.append(r)
        print(f"{task:<15}{r['n']:>5}{r['loss_mae_pct']:>12.2f}{r['baseline_loss_mae_pct']:>13.2f}"
              f"{r['band_pct']:>9.1f}{r['loss_in_band']:>9.0%}{r['acc_mae_pts']:>13.2f}"
              f"{r['acc_in_band']:>9.0%}")
    for k in ("loss_mae_pct", "baseline_loss_mae_pct", "loss_in_band", "acc_mae_pts",
              "acc_in_band"):
        print(f"  mean {k}: {np.mean([r[k] for r in rows]):.3f}")
    print(f"\ntotal {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
