"""Step 2: task loss -> accuracy, `Acc(L) = a / (1 + exp(-k (L - L0))) + b` (METHOD.md section 5).

Points are all intermediate checkpoints of the ladder runs: per run the first 10% of rows
(ceil) are dropped, loss and accuracy are smoothed by a trailing moving average of 5
(expanding for the first points), and one anchor (L = 0, Acc = 1) is added. The log-sigmoid
form of section 7 (for TaskCE) is here too. Parameters may carry leading batch axes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import curve_fit, least_squares

from taskladder.common.errors import InputError

from .fitting import Bounds, Solution, at_bounds, batched_lm
from .observations import Observations, ShapeError

SIGMOID_PARAMS = ("a", "L0", "k", "b")
SIGMOID_BOUNDS: Bounds = [(-1.0, 0.0), (0.0, None), (0.0, None), (0.0, 1.0)]
# The paper's curve_fit gives up after this many evaluations (then: not converged, degenerate).
# Its fits take at most 37 on the paper ladder's held-out splits (bench_trust) and up to 3,050
# on random ladders that converge; one that never does took 100,000 (30 s) at the old limit.
MAX_NFEV = 10_000
LOGSIG_PARAMS = ("a", "x0", "k")


def sigmoid(p: np.ndarray, x) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    a, x0, k, b = (p[..., i, None] for i in range(4))
    return a * _expit(k * (np.asarray(x, dtype=float) - x0)) + b


def sigmoid_jac(p: np.ndarray, x) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    a, x0, k, b = (p[..., i, None] for i in range(4))
    dx = np.asarray(x, dtype=float) - x0
    s = _expit(k * dx)
    ds = a * s * (1 - s)
    return a * s + b, np.stack([s, -k * ds, dx * ds, np.ones_like(s)], axis=-1)


def floored(q: np.ndarray, floor: float) -> np.ndarray:
    """The sigmoid's (a, L0, k, b) from (L0, k, b) with its floor a + b fixed at `floor`."""
    q = np.asarray(q, dtype=float)
    return np.stack([floor - q[..., 2], q[..., 0], q[..., 1], q[..., 2]], axis=-1)


def floored_jac(floor: float):
    """(prediction, Jacobian in (L0, k, b)) of the sigmoid whose floor is fixed at `floor`."""

    def jac(q, x):
        pred, J = sigmoid_jac(floored(q, floor), x)
        return pred, np.stack([J[..., 1], J[..., 2], J[..., 3] - J[..., 0]], axis=-1)

    return jac


def sigmoid_inverse(p: np.ndarray, acc) -> np.ndarray:
    """The loss at which the fitted sigmoid reaches `acc` (nan outside its range)."""
    a, x0, k, b = (np.asarray(p, dtype=float)[..., i] for i in range(4))
    with np.errstate(invalid="ignore", divide="ignore"):
        return x0 - np.log(a / (np.asarray(acc) - b) - 1) / k


def log_sigmoid(p: np.ndarray, x) -> np.ndarray:
    """Acc(x) = 1 - a ln(1 - sigmoid(k (x - x0))) (TaskCE as the intermediate feature)."""
    p = np.asarray(p, dtype=float)
    a, x0, k = (p[..., i, None] for i in range(3))
    z = k * (np.asarray(x, dtype=float) - x0)
    # ln(1 - sigmoid(z)) = -softplus(z)
    return 1 + a * np.logaddexp(0.0, z)


def log_sigmoid_jac(p: np.ndarray, x) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    a, x0, k = (p[..., i, None] for i in range(3))
    dx = np.asarray(x, dtype=float) - x0
    z = k * dx
    sp, s = np.logaddexp(0.0, z), _expit(z)
    return 1 + a * sp, np.stack([sp, -a * s * k, a * s * dx], axis=-1)


def _expit(z):
    return 0.5 * (1 + np.tanh(0.5 * z))


@dataclass(frozen=True)
class Step2Data:
    """Smoothed (loss, accuracy) points, the run each came from, and whether it is the anchor."""

    x: np.ndarray
    y: np.ndarray
    runs: np.ndarray
    anchor: bool


def moving_average(v: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over `window` points, expanding over the first window - 1 points."""
    if window <= 1 or len(v) == 0:
        return np.asarray(v, dtype=float)
    c = np.cumsum(np.asarray(v, dtype=float))
    out = np.empty_like(c)
    k = min(window - 1, len(c))  # a series shorter than the window is all expanding
    out[:k] = c[:k] / np.arange(1, k + 1)
    if len(c) >= window:
        out[window - 1 :] = (c[window - 1 :] - np.concatenate([[0.0], c[:-window]])) / window
    return out


def paired_series(
    obs: Observations, task: str, x_metric: str, y_metric: str, x_task: str | None = None
) -> dict[str, tuple[np.ndarray, ...]]:
    """Per run, the checkpoints that have both metrics, ordered by D: {run: (D, x, y)}."""
    xs = obs.where(task=x_task or task, metric=x_metric)
    ys = obs.where(task=task, metric=y_metric)
    keys = zip(xs.run.tolist(), xs.step.tolist(), strict=True)
    xmap = dict(zip(keys, xs.value.tolist(), strict=True))
    per_run: dict[str, list] = {}
    for r, s, d, v in zip(
        ys.run.tolist(), ys.step.tolist(), ys.D.tolist(), ys.value.tolist(), strict=True
    ):
        x = xmap.get((r, s))
        if x is not None:
            per_run.setdefault(r, []).append((d, x, v))
    return {
        r: tuple(np.array(c, dtype=float) for c in zip(*sorted(p), strict=True))
        for r, p in per_run.items()
    }


def step2_data(
    obs: Observations,
    task: str,
    x_metric: str,
    y_metric: str,
    skip: float = 0.1,
    window: int = 5,
    anchor: bool = True,
    x_task: str | None = None,
) -> Step2Data:
    series = paired_series(obs, task, x_metric, y_metric, x_task)
    if not series:
        raise InputError(f"step 2 for {task}: no checkpoints with both {x_metric} and {y_metric}")
    xs, ys, runs = [], [], []
    for run, (_, x, y) in series.items():
        start = math.ceil(skip * len(x))
        xs.append(moving_average(x[start:], window))
        ys.append(moving_average(y[start:], window))
        runs.append(np.full(len(x) - start, run, dtype=object))
    x, y, r = np.concatenate(xs), np.concatenate(ys), np.concatenate(runs)
    if anchor:
        x, y, r = np.append(x, 0.0), np.append(y, 1.0), np.append(r, "<anchor>")
    if len(x) < 5:
        raise ShapeError(f"step 2 for {task}: needs at least 5 checkpoints, got {len(x)}")
    return Step2Data(x, y, r, anchor)


def paper_p0(chance: float) -> tuple[float, float, float, float]:
    return (chance - 1.0, 0.9, 3.0, 1.0)


def fit_sigmoid_paper(data: Step2Data, chance: float) -> Solution:
    """The paper's fit: curve_fit (trf), one start p0 = [chance - 1, 0.9, 3, 1]."""
    lo, hi = zip(
        *((-np.inf if a is None else a, np.inf if b is None else b) for a, b in SIGMOID_BOUNDS),
        strict=True,
    )
    try:
        p, _ = curve_fit(
            lambda x, *q: sigmoid(np.array(q), x),
            data.x,
            data.y,
            p0=paper_p0(chance),
            bounds=(lo, hi),
            method="trf",
            maxfev=MAX_NFEV,
        )
        ok, msg = True, "curve_fit converged"
    except RuntimeError as exc:  # scipy reports non-convergence this way
        p, ok, msg = np.array(paper_p0(chance)), False, str(exc)
    obj = 0.5 * float(np.sum((sigmoid(p, data.x) - data.y) ** 2))
    return Solution(np.asarray(p, dtype=float), obj, ok, at_bounds(p, SIGMOID_BOUNDS), 1, msg)


def sigmoid_starts(data: Step2Data, chance: float) -> np.ndarray:
    """A grid of starts spanning floors, midpoints inside the observed loss range, and slopes."""
    x = data.x[data.x > 0] if data.anchor else data.x
    mids = np.quantile(x, [0.1, 0.5, 0.9])
    spread = max(float(np.ptp(x)), 1e-3)
    slopes = np.array([1.0, 4.0, 16.0]) / spread
    floors = np.unique(np.clip([chance, float(np.min(data.y))], 0.0, 1.0))
    ceils = np.array([1.0, min(1.0, float(np.max(data.y)) + 0.1)])
    rows = [(f - c, m, k, c) for f in floors for c in ceils for m in mids for k in slopes if c > f]
    return np.array(rows + [paper_p0(chance)], dtype=float)


def fit_sigmoid_grid(data: Step2Data, chance: float, n_best_starts: int = 2) -> Solution:
    """Least squares (trf, analytic Jacobian) from the best points of `sigmoid_starts`."""
    p, res, n = _least_squares(
        sigmoid_jac, data, sigmoid_starts(data, chance), SIGMOID_BOUNDS, n_best_starts
    )
    return Solution(
        p, float(res.cost), bool(res.status > 0), at_bounds(p, SIGMOID_BOUNDS), n, str(res.message)
    )


def _least_squares(jac_fn, data: Step2Data, starts, bounds: Bounds, n_best: int):
    """(parameters, scipy result, number of starts): trf least squares of `jac_fn`'s
    prediction from the `n_best` of `starts` with the smallest squared error."""
    lo, hi = zip(
        *((-np.inf if a is None else a, np.inf if b is None else b) for a, b in bounds),
        strict=True,
    )
    starts = np.clip(starts, lo, hi)
    sse = np.sum((jac_fn(starts, data.x)[0] - data.y) ** 2, axis=1)
    best = None
    for p0 in starts[np.argsort(sse)[:n_best]]:
        res = least_squares(
            lambda q: jac_fn(q, data.x)[0] - data.y,
            p0,
            jac=lambda q: jac_fn(q, data.x)[1],
            bounds=(lo, hi),
            method="trf",
            xtol=1e-10,
            ftol=1e-10,
            gtol=1e-10,
            max_nfev=2000,
        )
        if best is None or res.cost < best.cost:
            best = res
    assert best is not None
    return best.x.copy(), best, len(starts)


def bootstrap_sigmoid(
    data: Step2Data, point: np.ndarray, counts: np.ndarray, floor: float | None = None
) -> np.ndarray:
    """Refit for each row of point `counts` (B, n), warm-started from the point estimate;
    `floor`: with the floor a + b fixed there (`fit_sigmoid_floored`)."""
    if floor is None:
        return _bootstrap(sigmoid_jac, data, point, counts, SIGMOID_BOUNDS)
    Q = _bootstrap(floored_jac(floor), data, point[1:], counts, _floored_bounds(floor))
    return floored(Q, floor)


def _floored_bounds(floor: float) -> Bounds:
    return [(0.0, None), (0.0, None), (floor, 1.0)]  # L0, k, b: a = floor - b in [-1, 0]


def fit_sigmoid_floored(data: Step2Data, chance: float) -> Solution:
    """The sigmoid with its floor a + b at the task's chance accuracy, which is known, not
    fitted. Where step 2 has one point per run (a final-only ladder: 8 points for 4
    parameters), every point lies far above the floor and a free one trades against the
    slope, so a refit without one run swings the curve; the paper fixes floor and ceiling of
    its MC-format step 2 alike. `default` weighs it against the fitted floor by backtests
    (`backtest.candidates`): a task whose ladder sits on a plateau above chance keeps its
    fitted floor. Least squares from the `sigmoid_starts` whose floor is chance."""
    starts = [r[1:] for r in sigmoid_starts(data, chance) if abs(r[0] + r[3] - chance) < 1e-9]
    q, res, n = _least_squares(
        floored_jac(chance), data, np.array(starts), _floored_bounds(chance), 2
    )
    p = floored(q, chance)
    return Solution(
        p, float(res.cost), bool(res.status > 0), at_bounds(p, SIGMOID_BOUNDS), n, str(res.message)
    )


def bootstrap_log_sigmoid(data: Step2Data, point: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return _bootstrap(log_sigmoid_jac, data, point, counts, [(None, None)] * 3)


def _bootstrap(
    jac_fn, data: Step2Data, point: np.ndarray, counts: np.ndarray, bounds: Bounds
) -> np.ndarray:
    def resid_jac(P):
        pred, jac = jac_fn(P, data.x)
        return pred - data.y, jac

    P0 = np.repeat(point[None, :], len(counts), axis=0)
    return batched_lm(resid_jac, P0, counts.astype(float), bounds, max_iter=50, rtol=1e-8)[0]


def fit_log_sigmoid(data: Step2Data) -> Solution:
    """The TaskCE step 2 of section 7, from a small grid of starts."""
    best = None
    spread = max(float(np.ptp(data.x)), 1e-3)
    for x0 in np.quantile(data.x, [0.25, 0.5, 0.75]):
        for k in np.array([1.0, 4.0]) / spread:
            for a in (-0.1, -0.3):
                res = least_squares(
                    lambda q: log_sigmoid(q, data.x) - data.y,
                    (a, x0, k),
                    method="lm",
                    max_nfev=5000,
                )
                if best is None or res.cost < best.cost:
                    best = res
    assert best is not None
    return Solution(
        best.x.copy(), float(best.cost), bool(best.status > 0), (), 12, str(best.message)
    )
