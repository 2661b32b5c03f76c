"""Step 1: (N, D) -> task loss, `L = exp(a)/N^alpha + exp(b)/D^beta + E` (METHOD.md section 4).

Fitted to one point per ladder run (mean of its last 5 checkpoints) by minimising the sum of
Huber(ln L_hat - ln L) with L-BFGS-B and an analytic gradient. Also the compute form
`L(C) = exp(a)/C^alpha + E` (section 7). Parameter arrays may carry leading batch axes
(bootstrap draws): shapes (..., 5) with inputs (n,) give outputs (..., n).
"""

from __future__ import annotations

import math

import numpy as np

from taskladder.common.errors import InputError
from taskladder.common.facts import train_flops

from .fitting import Bounds, Solution, batched_lm, huber, lbfgsb
from .observations import Finals, Observations, ShapeError

ND_PARAMS = ("a", "b", "alpha", "beta", "E")
COMPUTE_PARAMS = ("a", "alpha", "E")
PAPER_P0 = (3.0, 6.0, 0.1, 0.2, 1.0)
PAPER_BOUNDS: Bounds = [(0.0, None)] * 5
# A, B below 1 allowed (the paper's ln A, ln B >= 0 is one of the reference's pitfalls);
# exponents kept in a physical range so extrapolation cannot run away.
FREE_BOUNDS: Bounds = [(-20.0, 60.0), (-20.0, 60.0), (0.0, 2.5), (0.0, 2.5), (0.0, 10.0)]


def nd_loss(p: np.ndarray, N, D) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    lnN, lnD = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    a, b, alpha, beta, E = (p[..., i, None] for i in range(5))
    return np.exp(a - alpha * lnN) + np.exp(b - beta * lnD) + E


def nd_jac(p: np.ndarray, N, D) -> tuple[np.ndarray, np.ndarray]:
    """Prediction (..., n) and its Jacobian (..., n, 5)."""
    p = np.asarray(p, dtype=float)
    lnN, lnD = np.log(np.asarray(N, dtype=float)), np.log(np.asarray(D, dtype=float))
    a, b, alpha, beta, E = (p[..., i, None] for i in range(5))
    tn, td = np.exp(a - alpha * lnN), np.exp(b - beta * lnD)
    pred = tn + td + E
    jac = np.stack([tn, td, -lnN * tn, -lnD * td, np.ones_like(pred)], axis=-1)
    return pred, jac


def compute_loss(p: np.ndarray, C) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    lnC = np.log(np.asarray(C, dtype=float))
    a, alpha, E = (p[..., i, None] for i in range(3))
    return np.exp(a - alpha * lnC) + E


def compute_jac(p: np.ndarray, C) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(p, dtype=float)
    lnC = np.log(np.asarray(C, dtype=float))
    a, alpha, E = (p[..., i, None] for i in range(3))
    t = np.exp(a - alpha * lnC)
    return t + E, np.stack([t, -lnC * t, np.ones_like(t)], axis=-1)


def step1_data(
    obs: Observations,
    task: str,
    metric: str,
    window: int = 5,
    log_space: bool = True,
    fraction: float = 0.0,
) -> Finals:
    """One point per run (`Observations.finals`). `log_space` (a fit on log values) requires
    every final value > 0; backtests read final accuracies, where 0 (a micro model) is valid."""
    d = obs.finals(task, metric, window, fraction=fraction)
    if log_space and np.any(d.y <= 0):
        raise InputError(
            f"step 1 for {task}: {metric} must be > 0 for a log-space fit, got {float(d.y.min()):g}"
        )
    return d


def step1_checkpoints(obs: Observations, task: str, metric: str, skip: float) -> Finals:
    """Every checkpoint of every run past its first `skip` share, one point each (`runs`
    repeats a run's name): step 1 on a schedule whose mid-run loss is a finished run's."""
    rows = []
    for idx, _ in obs.series(task, metric).values():
        rows.append(idx[math.ceil(skip * len(idx)) :] if len(idx) > 1 else idx)
    i = np.concatenate(rows)
    if np.any(obs.value[i] <= 0):
        raise InputError(f"step 1 for {task}: {metric} must be > 0 for a log-space fit")
    return Finals(tuple(obs.run[i].tolist()), obs.N[i], obs.D[i], obs.flops[i], obs.value[i])


def relative_noise(obs: Observations, task: str, metric: str, last: int = 10) -> float:
    """Noise SD of one measurement of a loss, relative: second differences of ln(loss) over
    each run's last `last` checkpoints (a smooth trend cancels; var = 6 sd^2), median over
    runs; 0 where no run has 4 checkpoints."""
    sds = [
        math.sqrt(np.mean(np.diff(np.log(v[-last:]), 2) ** 2) / 6)
        for _, v in obs.series(task, metric).values()
        if len(v) >= 4 and np.all(v[-last:] > 0)
    ]
    return float(np.median(sds)) if sds else 0.0


def log_jac(form: str, p: np.ndarray, N, D) -> np.ndarray:
    """d ln L / d p at points (N, D): rows (n, params); the compute form reads C = 6ND."""
    if form == "nd":
        pred, jac = nd_jac(p, N, D)
    else:
        C = train_flops(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        pred, jac = compute_jac(p, C)
    return jac / pred[..., None]


def log_covariance(form: str, p: np.ndarray, data: Finals, sigma: float) -> np.ndarray:
    """The delta method's covariance of the parameters for residuals of SD `sigma` in ln L
    (a pseudo-inverse: directions the points do not constrain add nothing)."""
    J = log_jac(form, p, data.N, data.D)
    return sigma**2 * np.linalg.pinv(J.T @ J)


def huber_log_objective(jac_fn, x: tuple, y: np.ndarray, delta: float, weights=None):
    """f(p) = sum_i w_i Huber(ln pred_i - ln y_i) with its gradient, for scipy."""
    lny = np.log(y)
    w = np.ones_like(y) if weights is None else weights

    def fun(p):
        with np.errstate(over="ignore", invalid="ignore"):
            pred, jac = jac_fn(p, *x)
            if not np.all(np.isfinite(pred) & (pred > 0)) or not np.all(np.isfinite(jac)):
                return 1e30, np.zeros_like(p)  # outside the law's domain: L-BFGS-B backtracks
            value, psi = huber(np.log(pred) - lny, delta)
            return float(np.sum(w * value)), (w * psi / pred) @ jac

    return fun


def start_grid(form: str) -> np.ndarray:
    """Starts for the grid search (Chinchilla-replication style)."""
    if form == "nd":
        axes = [
            np.array([0.0, 5.0, 10.0, 20.0]),
            np.array([0.0, 5.0, 10.0, 20.0]),
            np.array([0.05, 0.2, 0.5, 1.0]),
            np.array([0.05, 0.2, 0.5, 1.0]),
            np.array([0.0, 0.5, 1.0, 2.0]),
        ]
    else:
        axes = [
            np.array([0.0, 5.0, 10.0, 20.0, 40.0]),
            np.array([0.02, 0.05, 0.1, 0.2, 0.5, 1.0]),
            np.array([0.0, 0.5, 1.0, 2.0]),
        ]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(axes))


def _clip_to(p: np.ndarray, bounds: Bounds) -> np.ndarray:
    lo = [-np.inf if b[0] is None else b[0] for b in bounds]
    hi = [np.inf if b[1] is None else b[1] for b in bounds]
    return np.clip(p, lo, hi)


def fit_step1(
    data: Finals,
    form: str = "nd",
    p0: tuple | None = PAPER_P0,
    bounds: Bounds = PAPER_BOUNDS,
    delta: float = 1e-3,
    n_best_starts: int = 4,
) -> Solution:
    """Fit the step-1 law; `p0=None` = a vectorised grid, then L-BFGS-B from its best points."""
    n_par = 5 if form == "nd" else 3
    if len(data.y) < n_par:
        raise ShapeError(f"step 1 needs at least {n_par} ladder runs, got {len(data.y)}")
    jac_fn, x = (nd_jac, (data.N, data.D)) if form == "nd" else (compute_jac, (data.flops,))
    fun = huber_log_objective(jac_fn, x, data.y, delta)
    if p0 is not None:
        return lbfgsb(fun, np.array([p0], dtype=float), bounds)
    grid = _clip_to(start_grid(form), bounds)
    starts = grid[np.argsort(_objectives(jac_fn, x, data.y, delta, grid))[:n_best_starts]]
    sol = lbfgsb(fun, starts, bounds, tight=False)
    return Solution(sol.params, sol.objective, sol.converged, sol.at_bound, len(grid), sol.message)


def _objectives(jac_fn, x: tuple, y: np.ndarray, delta: float, P: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        obj = np.sum(huber(np.log(jac_fn(P, *x)[0]) - np.log(y), delta)[0], axis=1)
    return np.where(np.isfinite(obj), obj, np.inf)


def bootstrap_step1(
    data: Finals,
    point: np.ndarray,
    counts: np.ndarray,
    form: str,
    bounds: Bounds,
    delta: float,
    max_iter: int = 200,
) -> np.ndarray:
    """Refit for each row of run `counts` (B, runs), warm-started from `point`."""
    jac_fn, x = (nd_jac, (data.N, data.D)) if form == "nd" else (compute_jac, (data.flops,))
    lny = np.log(data.y)

    def resid_jac(P):
        pred, jac = jac_fn(P, *x)
        pred = np.maximum(pred, 1e-300)
        return np.log(pred) - lny, jac / pred[..., None]

    P0 = np.broadcast_to(point, (len(counts), point.shape[-1]))
    return batched_lm(
        resid_jac, P0, counts.astype(float), bounds, huber_delta=delta, max_iter=max_iter
    )[0]
