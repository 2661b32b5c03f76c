"""Trajectory laws: the target's task loss and accuracy at every point of its own schedule.

Why: a final-point prediction is checked once, after the whole target was paid for. Every
ladder run is a complete schedule (cosine to 10% of peak over its own planned total), so its
intermediate checkpoints show where a run stands at each fraction f = D_seen / D_planned of
its schedule. One step-1 law per fraction f of `FRACTIONS` (the paper's form and fit, METHOD.md
section 4, on each run's smoothed task loss at fraction f) answers "loss at (N, D = f x
D_planned)"; between grid fractions the prediction is interpolated in ln f. A ladder whose runs
were first evaluated later than 10% of their schedule (a micro ladder with 3 checkpoints a
run) gets a grid that starts at its latest first checkpoint. Step 2 (loss ->
accuracy) is the paper's sigmoid on all intermediate checkpoints, which already mixes
schedule points.

Band (`level`, default 90%): split-conformal on backtests that predict the largest size's
checkpoints (and the two largest sizes' from the rest) at every fraction >= 10%, over held-out
runs (`loss_quantile`). The score of a held-out checkpoint is |ln(measured / predicted)|
divided by the extrapolation distance
u = max(ln(N / N_max of the fit), U_MIN): errors grow with how far beyond the ladder the
target is, and the backtests reach u = 0.5 to 1.2 (OLMo ladder), close to 7B's 1.7. Accuracy:
the loss band mapped through the sigmoid, widened by the conformal quantile of the held-out
accuracies' distance from the sigmoid at their own measured loss (evaluation noise and the
sigmoid's misfit).

Schedules (`Schedule`): checkpoints before 10% of the planned total (warmup and the early
transient) and after it (extrapolated in f) are `untrusted`, as is a final anneal that is not
the ladder's shape, except its end, which stands for a completed schedule at its own D (the
paper's 7B-4T point is such an anneal); a shape other than the ladder's cosine is untrusted
throughout. Reasons are given, nothing is extrapolated silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from taskladder.common.errors import FieldError, InputError
from taskladder.common.facts import train_flops

from .observations import Finals, Observations
from .step1 import PAPER_BOUNDS, PAPER_P0, fit_step1, nd_loss
from .step2 import fit_sigmoid_paper, sigmoid, step2_data
from .tasks import accuracy_metric, chance_level
from .trust import conformal_rank

SCHEMA = "taskladder.trajectory/1"
FRACTIONS = tuple(round(0.1 + 0.05 * i, 4) for i in range(19))  # 0.10, 0.15, ..., 1.00
START = FRACTIONS[0]
U_MIN = 0.5  # extrapolation distance of an interpolated target: the closest backtest's
SMOOTH = 5  # centred moving average over checkpoints before reading a run at a fraction
SMOOTH_DEGREE = 3  # the per-fraction predictions are smoothed by a cubic in ln f
SHAPE = "cosine"  # the ladder's schedule: cosine to 10% of peak over each run's planned total


@dataclass(frozen=True)
class Schedule:
    """The target's schedule: `planned` tokens of `shape`, optionally stopped at
    `anneal_from` tokens for a final anneal that ends at `end` tokens."""

    planned: float
    shape: str = SHAPE
    anneal_from: float | None = None
    end: float | None = None

    def __post_init__(self) -> None:
        if not (math.isfinite(self.planned) and self.planned > 0):
            raise FieldError("schedule.planned", f"{self.planned!r}: must be > 0 tokens")
        if (self.anneal_from is None) != (self.end is None):
            raise FieldError("schedule.anneal_from", "an anneal needs both its start and its end")
        if self.anneal_from is not None and not 0 < self.anneal_from < self.end:
            raise FieldError(
                "schedule.anneal_from",
                f"{self.anneal_from:.4g} must be > 0 and before the anneal's end {self.end:.4g}",
            )

    def place(self, D: np.ndarray, start: float = START) -> tuple[np.ndarray, list[str | None]]:
        """Per checkpoint: the ladder fraction it is judged at and why it is untrusted (None:
        judged; `start`: the law's first fraction). An anneal's end is judged as a completed
        schedule (fraction 1) at its D."""
        D = np.asarray(D, dtype=float)
        frac = D / self.planned
        reasons: list[str | None] = []
        for i, d in enumerate(D):
            if self.shape != SHAPE:
                why = f"schedule {self.shape!r} is not the ladder's {SHAPE}"
            elif self.anneal_from is not None and d >= self.end * (1 - 1e-3):
                frac[i], why = 1.0, None
            elif self.anneal_from is not None and d > self.anneal_from:
                why = "inside the final anneal (not a ladder schedule)"
            elif frac[i] < start - 1e-9:
                why = f"before {start:.0%} of the planned total (warmup, early transient)"
            elif frac[i] > 1 + 1e-6:
                why = "past the planned total"
            else:
                why = None
            reasons.append(why)
        return frac, reasons

    def to_dict(self) -> dict:
        return {"planned": self.planned, "shape": self.shape,
                "anneal_from": self.anneal_from, "end": self.end}


@dataclass(frozen=True)
class RunCurve:
    """One ladder run's checkpoints of one metric: N, tokens seen, planned total, values."""

    N: float
    D: np.ndarray
    planned: float
    values: np.ndarray

    def at(self, fractions) -> np.ndarray:
        """The run's smoothed value at schedule fractions (interpolated in ln f, ln value)."""
        f = self.D / self.planned
        s = centred_mean(self.values, SMOOTH if len(self.values) >= 4 * SMOOTH else 1)
        return np.exp(np.interp(np.log(fractions), np.log(f), np.log(s)))


def centred_mean(v: np.ndarray, window: int) -> np.ndarray:
    """Mean over a centred window, shrinking at both ends (no lag, unlike a trailing mean)."""
    v = np.asarray(v, dtype=float)
    k, n = window // 2, len(v)
    c = np.concatenate([[0.0], np.cumsum(v)])
    lo, hi = np.maximum(np.arange(n) - k, 0), np.minimum(np.arange(n) + k + 1, n)
    return (c[hi] - c[lo]) / (hi - lo)


def run_curves(obs: Observations, task: str, metric: str) -> dict[str, RunCurve]:
    """Per ladder run with at least two evaluated checkpoints: its curve. The planned total of
    a ladder run is its last checkpoint's D."""
    out = {}
    for run, (idx, v) in obs.series(task, metric).items():
        D = obs.D[idx]
        if len(D) >= 2 and D[0] > 0 and np.all(v > 0):
            out[run] = RunCurve(float(obs.N[idx][0]), D, float(D[-1]), v)
    return out


def fraction_grid(curves: dict[str, RunCurve]) -> np.ndarray:
    """`FRACTIONS` from the latest first checkpoint of any run (10% at the earliest) on."""
    first = max(START, max(float(c.D[0] / c.planned) for c in curves.values()))
    return np.array([first] + [f for f in FRACTIONS if f > first + 1e-9])


def fit_fraction_laws(curves: dict[str, RunCurve]) -> tuple[np.ndarray, np.ndarray]:
    """The fraction grid and the step-1 parameters (fractions, 5) fitted at each fraction."""
    runs = list(curves)
    if len(runs) < 5 or len({curves[r].N for r in runs}) < 2:
        raise InputError(
            f"trajectory: needs at least 5 ladder runs of 2 sizes with intermediate "
            f"checkpoints, got {len(runs)}"
        )
    N = np.array([curves[r].N for r in runs])
    planned = np.array([curves[r].planned for r in runs])
    grid = fraction_grid(curves)
    Y = np.stack([curves[r].at(grid) for r in runs])
    params = []
    for j, f in enumerate(grid):
        D = f * planned
        data = Finals(tuple(runs), N, D, train_flops(N, D), Y[:, j])
        params.append(fit_step1(data, "nd", PAPER_P0, PAPER_BOUNDS, 1e-3).params)
    return grid, np.array(params)


def loss_at(grid: np.ndarray, params: np.ndarray, N, D, fraction) -> np.ndarray:
    """Predicted loss at (N, D) reached at schedule `fraction` (arrays broadcast): each
    fraction's law at (N, D), smoothed across fractions by a cubic in ln f (the laws are fitted
    independently, so their extrapolations jitter from one fraction to the next), read at f."""
    N, D, f = np.broadcast_arrays(*(np.asarray(a, dtype=float) for a in (N, D, fraction)))
    per = np.log(nd_loss(params, N.ravel(), D.ravel()))  # (fractions, n)
    lnF, lnf = np.log(grid), np.log(np.clip(f.ravel(), grid[0], 1.0))
    degree = min(SMOOTH_DEGREE, len(grid) - 1)
    coef = np.linalg.lstsq(np.vander(lnF, degree + 1), per, rcond=None)[0]  # (degree + 1, n)
    out = np.exp(np.sum(coef * np.vander(lnf, degree + 1).T, axis=0))
    return out.reshape(N.shape)


@dataclass(frozen=True)
class TrajectoryLaw:
    """A fitted trajectory for one task; `predict(N, D, fraction)` -> loss and accuracy bands."""

    task: str
    loss_metric: str
    acc_metric: str
    chance: float
    fractions: tuple[float, ...]
    params: tuple[tuple[float, ...], ...]
    step2: tuple[float, ...]
    n_max: float
    level: float
    loss_q: float  # band half-width in ln loss per unit of extrapolation distance
    acc_q: float  # accuracy noise and sigmoid misfit (fraction, not points)
    calibration: dict

    def distance(self, N) -> np.ndarray:
        return np.maximum(np.log(np.asarray(N, dtype=float) / self.n_max), U_MIN)

    def predict(self, N, D, fraction) -> dict[str, np.ndarray]:
        loss = loss_at(np.array(self.fractions), np.array(self.params), N, D, fraction)
        half = self.loss_q * self.distance(N)
        lo, hi = loss * np.exp(-half), loss * np.exp(half)
        p2 = np.array(self.step2)

        def acc(x):
            return sigmoid(p2, np.ravel(x)).reshape(np.shape(x))

        return {
            "bpb": loss,
            "bpb_low": lo,
            "bpb_high": hi,
            "acc": acc(loss),
            "acc_low": np.clip(acc(hi) - self.acc_q, 0, 1),
            "acc_high": np.clip(acc(lo) + self.acc_q, 0, 1),
        }

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "task": self.task,
            "loss_metric": self.loss_metric,
            "acc_metric": self.acc_metric,
            "chance": self.chance,
            "fractions": list(self.fractions),
            "params": [list(p) for p in self.params],
            "step2": list(self.step2),
            "n_max": self.n_max,
            "level": self.level,
            "loss_q": self.loss_q,
            "acc_q": self.acc_q,
            "calibration": self.calibration,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TrajectoryLaw:
        if d.get("schema") != SCHEMA:
            raise InputError(f"trajectory: unknown schema {d.get('schema')!r} (expected {SCHEMA})")
        return cls(
            d["task"], d["loss_metric"], d["acc_metric"], float(d["chance"]),
            tuple(map(float, d["fractions"])),
            tuple(tuple(map(float, p)) for p in d["params"]), tuple(map(float, d["step2"])),
            float(d["n_max"]), float(d["level"]), float(d["loss_q"]), float(d["acc_q"]),
            dict(d.get("calibration") or {}),
        )


def _fit_point(obs: Observations, task: str, loss_metric: str, acc_metric: str, chance: float):
    curves = run_curves(obs, task, loss_metric)
    grid, params = fit_fraction_laws(curves)
    p2 = fit_sigmoid_paper(step2_data(obs, task, loss_metric, acc_metric), chance).params
    return curves, grid, params, p2


def holdout_splits(curves: dict[str, RunCurve]) -> dict[str, tuple[list[str], list[str]]]:
    """Backtests: the largest size from the rest; the two largest sizes from the rest (a
    longer extrapolation); splits that leave too little to fit are omitted."""
    sizes = sorted({c.N for c in curves.values()})
    out = {}
    for name, k in (("largest-size", 1), ("two-largest", 2)):
        if len(sizes) - k < 2:
            continue
        train = [r for r, c in curves.items() if c.N < sizes[-k]]
        test = [r for r, c in curves.items() if c.N >= sizes[-k]]
        if len(train) >= 5:
            out[name] = (train, test)
    return out


def backtest(obs: Observations, task: str, loss_metric: str = "bpb") -> dict[str, dict]:
    """Per split, per held-out run: fraction, measured and predicted loss and accuracy at
    every checkpoint from 10% of its schedule on, the distance u of the prediction and the
    split's step-2 parameters."""
    acc_metric = accuracy_metric(task, obs)
    chance = chance_level(task, obs)
    curves = run_curves(obs, task, loss_metric)
    acc = {r: v for r, (_, v) in obs.series(task, acc_metric).items()}
    out: dict[str, dict] = {}
    for split, (train, test) in holdout_splits(curves).items():
        sub = obs.where(run=train)
        _, grid, params, p2 = _fit_point(sub, task, loss_metric, acc_metric, chance)
        n_max = max(curves[r].N for r in train)
        out[split] = {}
        for r in test:
            c = curves[r]
            f = c.D / c.planned
            keep = f >= grid[0] - 1e-9
            if r not in acc or len(acc[r]) != len(c.D):
                continue
            pred = loss_at(grid, params, c.N, c.D[keep], f[keep])
            out[split][r] = {
                "fraction": f[keep],
                "loss": c.values[keep],
                "loss_pred": pred,
                "acc": acc[r][keep],
                "acc_pred": sigmoid(p2, pred),
                "acc_at_loss": sigmoid(p2, c.values[keep]),
                "u": max(math.log(c.N / n_max), U_MIN),
                "step2": p2,
            }
    return out


def conformal(scores: np.ndarray, level: float) -> float:
    """The ceil((n + 1) level)-th smallest score (split-conformal quantile, the rank of
    `trust.conformal_rank`), the largest when n is too small."""
    s = np.sort(np.asarray(scores, dtype=float))
    if not len(s):
        return math.nan
    k = min(conformal_rank(len(s), level), len(s))
    return float(s[k - 1])


def loss_quantile(held_out: list[dict], level: float) -> float:
    """The loss band's half-width per unit of u, split-conformal over held-out runs: a run's
    checkpoints share its offset from the law (they are not exchangeable, the runs are), so a
    run's score is the `level` quantile of its |ln(measured / predicted)| / u, and the band the
    conformal quantile of the runs' scores (pooling checkpoints covered 86%, not 90%)."""
    return conformal(np.array([np.quantile(np.abs(np.log(r["loss"] / r["loss_pred"])) / r["u"],
                                           level) for r in held_out]), level)


def fit_trajectory(
    obs: Observations, task: str, loss_metric: str = "bpb", level: float = 0.9
) -> TrajectoryLaw:
    """Fit one task's trajectory law on the whole ladder, its band calibrated by backtests."""
    acc_metric = accuracy_metric(task, obs)
    chance = chance_level(task, obs)
    curves, grid, params, p2 = _fit_point(obs, task, loss_metric, acc_metric, chance)
    bt = backtest(obs, task, loss_metric)
    held = [r for s in bt.values() for r in s.values()]
    acc_scores = [np.abs(r["acc"] - r["acc_at_loss"]) for r in held]
    if not held:
        raise InputError(
            f"trajectory for {task}: no backtest possible (needs at least 3 sizes and 5 runs "
            "below the largest)"
        )
    return TrajectoryLaw(
        task=task,
        loss_metric=loss_metric,
        acc_metric=acc_metric,
        chance=chance,
        fractions=tuple(map(float, grid)),
        params=tuple(tuple(map(float, p)) for p in params),
        step2=tuple(map(float, p2)),
        n_max=max(c.N for c in curves.values()),
        level=level,
        loss_q=loss_quantile(held, level),
        acc_q=conformal(np.concatenate(acc_scores), level),
        calibration={"splits": {k: sorted(v) for k, v in bt.items()}, "n_runs": len(held)},
    )
