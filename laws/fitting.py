"""Robust fitting primitives shared by the laws: Huber, multi-start L-BFGS-B, batched LM.

The point fits use scipy (L-BFGS-B with analytic gradients, started from the best points of a
vectorised grid); bootstrap refits use `batched_lm`, a damped Gauss-Newton that solves
hundreds of small weighted problems at once in numpy, warm-started from the point estimate.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

Bounds = list[tuple[float | None, float | None]]


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Our problems are tiny: a threaded BLAS only adds sync cost (18x slower L-BFGS-B on a
    busy 2-core machine), so fits run with one BLAS thread when threadpoolctl is available."""
    controller = _blas_controller()
    if controller is None:  # optional: fits are correct either way
        yield
        return
    with controller.limit(limits=1, user_api="blas"):
        yield


@functools.cache
def _blas_controller():
    """One threadpoolctl controller per process: finding the loaded libraries is the slow part."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def huber(r: np.ndarray, delta: float) -> tuple[np.ndarray, np.ndarray]:
    """Huber loss of residuals and its derivative (psi)."""
    a = np.abs(r)
    quad = a <= delta
    value = np.where(quad, 0.5 * r * r, delta * (a - 0.5 * delta))
    psi = np.where(quad, r, delta * np.sign(r))
    return value, psi


@dataclass(frozen=True)
class Solution:
    """A fitted parameter vector with the diagnostics the degenerate-fit flags are built from."""

    params: np.ndarray
    objective: float
    converged: bool
    at_bound: tuple[int, ...]
    n_starts: int
    message: str


def at_bounds(p: np.ndarray, bounds: Bounds, rtol: float = 1e-6) -> tuple[int, ...]:
    """Indices of parameters sitting on a finite bound."""
    hit = []
    for i, (lo, hi) in enumerate(bounds):
        for b in (lo, hi):
            if b is not None and np.isfinite(b) and abs(p[i] - b) <= rtol * max(1.0, abs(b)):
                hit.append(i)
                break
    return tuple(hit)


def lbfgsb(
    fun: Callable[[np.ndarray], tuple[float, np.ndarray]],
    starts: np.ndarray,
    bounds: Bounds,
    tight: bool = True,
) -> Solution:
    """L-BFGS-B with an analytic gradient from each start; keep the lowest objective."""
    best = None
    opts = {"maxiter": 10_000, "ftol": 0.0 if tight else 1e-12, "gtol": 1e-12 if tight else 1e-9}
    with single_threaded_blas():
        for p0 in np.atleast_2d(starts):
            res = minimize(
                fun,
                p0,
                jac=True,
                method="L-BFGS-B",
                bounds=bounds,
                tol=0.0 if tight else None,
                options=opts,
            )
            if best is None or res.fun < best.fun:
                best = res
    assert best is not None
    # "ABNORMAL" line-search ends at machine precision are converged in practice: accept a
    # vanishing projected gradient too.
    grad = _projected_grad(best.x, best.jac, bounds)
    ok = bool(best.success) or float(np.max(np.abs(grad))) < 1e-6 * max(1.0, abs(best.fun))
    return Solution(
        best.x.copy(),
        float(best.fun),
        ok,
        at_bounds(best.x, bounds),
        len(np.atleast_2d(starts)),
        str(best.message),
    )


def _projected_grad(p: np.ndarray, g: np.ndarray, bounds: Bounds) -> np.ndarray:
    g = np.array(g, dtype=float)
    for i, (lo, hi) in enumerate(bounds):
        if lo is not None and p[i] <= lo and g[i] > 0:
            g[i] = 0.0
        if hi is not None and p[i] >= hi and g[i] < 0:
            g[i] = 0.0
    return g


def bound_arrays(bounds: Bounds) -> tuple[np.ndarray, np.ndarray]:
    lo = np.array([-np.inf if b[0] is None else b[0] for b in bounds], dtype=float)
    hi = np.array([np.inf if b[1] is None else b[1] for b in bounds], dtype=float)
    return lo, hi


def batched_lm(
    resid_jac: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    P0: np.ndarray,
    weights: np.ndarray,
    bounds: Bounds,
    huber_delta: float | None = None,
    max_iter: int = 100,
    rtol: float = 1e-9,
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise sum_i w_bi * rho(r_bi(P_b)) for every row b of P at once.

    `resid_jac(P)` returns residuals (B, n) and their Jacobian (B, n, p); rho is r^2/2 or the
    Huber loss (solved by iteratively reweighted Gauss-Newton). Box bounds by projection.
    Returns the parameters (B, p) and a converged flag per row.
    """
    lo, hi = bound_arrays(bounds)
    P = np.clip(np.array(P0, dtype=float), lo, hi)
    B, p = P.shape
    r, J = resid_jac(P)

    c = _cost(r, weights, huber_delta)
    lam = np.full(B, 1e-3)
    done = np.zeros(B, dtype=bool)
    eye = np.eye(p)
    for _ in range(max_iter):
        act = ~done
        if not act.any():
            break
        ra, Ja, wa = r[act], J[act], weights[act]
        if huber_delta is not None:
            absr = np.abs(ra)
            wa = wa * np.where(absr <= huber_delta, 1.0, huber_delta / np.maximum(absr, 1e-300))
        # Parameters on a bound whose descent direction leaves the box are held fixed
        # for this step (active set); the rest take a damped Gauss-Newton step.
        Pa = P[act]
        g = np.einsum("bnp,bn->bp", Ja, wa * ra)
        held = ((Pa <= lo) & (g > 0)) | ((Pa >= hi) & (g < 0))
        Jf = np.where(held[:, None, :], 0.0, Ja)
        g = np.where(held, 0.0, g)
        H = np.transpose(Jf, (0, 2, 1)) @ (Jf * wa[:, :, None])
        diag = np.einsum("bii->bi", H) + held
        A = (
            H
            + held[:, :, None] * eye
            + lam[act, None, None] * (diag[:, :, None] * eye + 1e-12 * eye)
        )
        try:
            step = np.linalg.solve(A, -g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -g / np.maximum(diag, 1e-12)
        Pn = np.clip(Pa + step, lo, hi)
        rn, Jn = resid_jac(Pn)
        cn = _cost(rn, weights[act], huber_delta)
        better = np.isfinite(cn) & (cn <= c[act])
        idx = np.flatnonzero(act)
        gain = (c[act] - cn) / np.maximum(c[act], 1e-300)
        small_step = np.max(np.abs(Pn - Pa) / (np.abs(Pa) + 1e-8), axis=1) < 1e-9
        ib = idx[better]
        P[ib], r[ib], J[ib], c[ib] = Pn[better], rn[better], Jn[better], cn[better]
        lam[ib] = np.maximum(lam[ib] / 3, 1e-9)
        lam[idx[~better]] *= 4
        done[idx[(better & (gain < rtol)) | (lam[idx] > 1e8) | small_step]] = True
    return P, done


def _cost(r: np.ndarray, w: np.ndarray, delta: float | None) -> np.ndarray:
    if delta is None:
        return 0.5 * np.sum(w * r * r, axis=1)
    return np.sum(w * huber(r, delta)[0], axis=1)
