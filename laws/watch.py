"""Judging a target's checkpoints against its trajectory band, one task at a time.

Each checkpoint of a task is `untrusted` (the schedule says why, see `Schedule.place`),
`pass` or `drift`: the measured value (task loss, or accuracy) lies outside the band
(`tolerance="interval"`), or further from the predicted value than `tolerance` (relative for
the loss, e.g. 0.05; accuracy points as a fraction, e.g. 0.05). The task drifts when its latest
`patience` judged checkpoints all drift (untrusted ones neither break nor extend the streak),
so one noisy evaluation does not stop a run and a lasting shift does within `patience`
checkpoints of showing.
"""

from __future__ import annotations

import numpy as np

from taskladder.common.errors import InputError

from .observations import Observations
from .trajectory import Schedule, TrajectoryLaw

VERDICTS = ("pass", "drift", "untrusted")


def checkpoints(obs: Observations, task: str, metric: str, where: str) -> dict[str, np.ndarray]:
    """The target's checkpoints of one task metric, ordered by step: step, D, N, value.
    A checkpoint after step 0 without a token count, or steps whose token counts do not grow,
    are errors (the initial model, step 0 at D = 0, is a checkpoint like any other)."""
    rows = np.flatnonzero(obs.mask(task=task, metric=metric))
    if not len(rows):
        raise InputError(f"{where}: no {task} {metric} in the target's evaluations")
    order = rows[np.lexsort((obs.D[rows], obs.step[rows]))]
    step, D = obs.step[order], obs.D[order]
    if np.any((D <= 0) & (step > 0)):
        i = order[np.argmax((D <= 0) & (step > 0))]
        raise InputError(f"{where}: checkpoint at step {obs.step[i]} has no token count (D = 0)")
    back = np.flatnonzero(np.diff(D) <= 0)
    if len(back):
        a, b = back[0], back[0] + 1
        raise InputError(
            f"{where}: step out of order: step {step[b]} has D={D[b]:.6g} tokens, not more "
            f"than step {step[a]} (D={D[a]:.6g})"
        )
    return {"step": step, "D": D, "N": obs.N[order], "value": obs.value[order]}


def judge(
    law: TrajectoryLaw,
    schedule: Schedule,
    cp: dict[str, np.ndarray],
    metric: str = "loss",
    tolerance: float | str = "interval",
) -> list[dict]:
    """One row per checkpoint: step, D, fraction, measured, predicted, low, high, verdict,
    reason (why it is untrusted)."""
    key = "bpb" if metric == "loss" else "acc"
    frac, why = schedule.place(cp["D"], law.fractions[0])
    judged = np.array([w is None for w in why])
    pred = {k: np.full(len(frac), np.nan) for k in (key, f"{key}_low", f"{key}_high")}
    if judged.any():
        p = law.predict(cp["N"][judged], cp["D"][judged], frac[judged])
        for k in pred:
            pred[k][judged] = p[k]
    rows = []
    for i, reason in enumerate(why):
        x, c, lo, hi = cp["value"][i], pred[key][i], pred[f"{key}_low"][i], pred[f"{key}_high"][i]
        if reason is not None:
            verdict = "untrusted"
        elif tolerance == "interval":
            verdict = "pass" if lo <= x <= hi else "drift"
        else:
            err = abs(x / c - 1) if metric == "loss" else abs(x - c)
            verdict = "pass" if err <= tolerance else "drift"
        rows.append({
            "step": int(cp["step"][i]),
            "D": float(cp["D"][i]),
            "fraction": float(frac[i]),
            "measured": float(x),
            "predicted": _num(c),
            "low": _num(lo),
            "high": _num(hi),
            "verdict": verdict,
            "reason": reason,
        })
    return rows


def task_verdict(rows: list[dict], patience: int) -> dict:
    """`drift` when the latest `patience` judged checkpoints all drift (and from which step
    the streak runs), `untrusted` when none was judged, else `pass`."""
    judged = [r for r in rows if r["verdict"] != "untrusted"]
    if not judged:
        return {"verdict": "untrusted", "since_step": None, "streak": 0}
    streak = 0
    for r in reversed(judged):
        if r["verdict"] != "drift":
            break
        streak += 1
    drift = streak >= patience
    return {
        "verdict": "drift" if drift else "pass",
        "since_step": judged[-streak]["step"] if drift else None,
        "streak": streak,
    }


def _num(v) -> float | None:
    return None if not np.isfinite(v) else float(v)
