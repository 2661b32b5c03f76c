"""The variants the paper compares (METHOD.md section 7), beside the chained law.

- `fit_single_step`: Acc(N, D) = p / (1 + exp(-(A/N^alpha + B/D^beta + E))) + q on the final
  points, Huber on log residuals with L-BFGS-B (fragile, as the paper says).
- the compute form of step 1, C4 loss / TaskCE features: `LawSettings(step1_form="compute")`,
  `LawSettings(feature="ce_c4_en")`, `LawSettings(feature="task_ce", step2_form="log_sigmoid")`
  in the chained fitter (`--step1-form`, `--feature`, `--step2-form`).
- `fit_mc_step2`: RC task bpb -> MC accuracy with floor (chance) and ceiling (1) fixed, on the
  later checkpoints where MC ability has emerged.
- `variance_table`: checkpoint-to-checkpoint noise of the largest, longest run.
- `compute_vs_error`: chained error as the ladder shrinks (fewer sizes / lengths).
"""

from __future__ import annotations

import itertools

import numpy as np
from scipy.optimize import least_squares

from taskladder.common.errors import InputError
from taskladder.common.facts import train_flops

from .fitting import Solution, at_bounds, huber, lbfgsb
from .observations import Observations
from .point_fit import fit_chained
from .settings import LawSettings
from .step1 import PAPER_BOUNDS, PAPER_P0, nd_jac, step1_data
from .step2 import paired_series, sigmoid
from .tasks import TaskRows, accuracy_metric, chance_level

SINGLE_STEP_PARAMS = ("a", "b", "alpha", "beta", "E", "p", "q")


def single_step(params, N, D) -> np.ndarray:
    """Acc(N, D) of the one-step law (params a, b, alpha, beta, E, p, q)."""
    params = np.asarray(params, dtype=float)
    inner = nd_jac(params[..., :5], N, D)[0]
    return params[..., 5, None] / (1 + np.exp(-inner)) + params[..., 6, None]


def fit_single_step(
    obs: Observations, task: str, window: int = 5, delta: float = 1e-3, chance: float | None = None
) -> Solution:
    """The one-step law on the runs' final accuracies (mean of the last `window` checkpoints)."""
    d = step1_data(obs, task, accuracy_metric(task, obs), window)
    lny = np.log(d.y)

    def fun(p):
        inner, jac = nd_jac(p[:5], d.N, d.D)
        s = 1 / (1 + np.exp(-inner))
        pred = p[5] * s + p[6]
        if np.any(pred <= 0):
            return 1e30, np.zeros_like(p)
        value, psi = huber(np.log(pred) - lny, delta)
        g_pred = psi / pred
        grad = np.concatenate([(g_pred * p[5] * s * (1 - s)) @ jac, [g_pred @ s, g_pred.sum()]])
        return float(value.sum()), grad

    chance = chance_level(task, obs) if chance is None else chance
    bounds = [*PAPER_BOUNDS, (-1.0, 0.0), (0.0, 1.0)]
    starts = np.array([[*PAPER_P0, 2 * (chance - 1), 1.0], [*PAPER_P0, chance - 1, 1.0]])
    return lbfgsb(fun, starts, bounds)


def fit_mc_step2(
    obs: Observations,
    task: str,
    skip: float = 0.5,
    x_metric: str = "bpb",
    chance: float | None = None,
) -> Solution:
    """MC accuracy from RC task loss: floor = chance, ceiling = 1 fixed; fit L0 and k."""
    series = paired_series(obs, task, x_metric, "acc_mc")
    if not series:
        raise InputError(f"MC step 2 for {task}: no checkpoints with both {x_metric} and acc_mc")
    xs, ys = [], []
    for _, x, y in series.values():
        start = int(np.ceil(skip * len(x)))
        xs.append(x[start:])
        ys.append(y[start:])
    x, y = np.concatenate(xs), np.concatenate(ys)
    chance = chance_level(task, obs) if chance is None else chance

    def resid(q):
        return sigmoid(np.array([chance - 1, q[0], q[1], 1.0]), x) - y

    res = least_squares(
        resid, (float(np.median(x)), 5.0), bounds=([0, 0], [np.inf, np.inf]), method="trf"
    )
    params = np.array([chance - 1, res.x[0], res.x[1], 1.0])
    return Solution(
        params,
        float(res.cost),
        bool(res.status > 0),
        at_bounds(res.x, [(0, None), (0, None)]),
        1,
        str(res.message),
    )


def variance_table(
    obs: Observations,
    tasks: list[str],
    last: int = 10,
    features: dict[str, tuple[str, str]] | None = None,
) -> dict[str, dict]:
    """Population SD and SD/mean of the feature (task bpb unless `features` maps a task to
    another (task, metric)) and accuracy over the last checkpoints of the largest, longest run."""
    big = obs.where(obs.N == obs.N.max())
    run = max(big.unique("run"), key=lambda r: big.where(run=r).D.max())
    one = obs.where(run=run)
    out = {}
    for task in tasks:
        row = {"run": run}
        x_task, x_metric = (features or {}).get(task, (task, "bpb"))
        for key, t, metric in (
            ("loss", x_task, x_metric),
            ("acc", task, accuracy_metric(task, obs)),
        ):
            if len(one.where(task=t, metric=metric)) == 0:
                raise InputError(f"variance analysis: run {run!r} has no {t} {metric}")
            sd = float(one.finals(t, metric, last, stat=np.std).y[0])
            row[f"{key}_sd"] = sd
            mean = float(one.finals(t, metric, last).y[0])
            row[f"{key}_cv"] = sd / mean
            row[f"{key}_noise"] = _detrended_sd(one, t, metric, last)
            row[f"{key}_noise_cv"] = row[f"{key}_noise"] / mean
            row["checkpoints"] = min(last, one.checkpoints_per_run(t, metric)[run])
        out[task] = row
    return out


def _detrended_sd(one: Observations, task: str, metric: str, last: int) -> float:
    """SD of the last checkpoints around their linear trend in D: evaluation noise, not the
    training still improving over those checkpoints (the plain SD counts both)."""
    (idx, values), = one.series(task, metric).values()
    y = np.asarray(values[-last:], float)
    if len(y) < 3:
        return float(np.std(y))
    d = np.asarray(one.D[idx][-last:], float)
    residual = y - np.polyval(np.polyfit(d, y, 1), d)
    return float(np.sqrt(np.sum(residual**2) / (len(y) - 2)))


def compute_vs_error(
    obs: Observations,
    task: str,
    target: tuple[float, float],
    actual_acc: float | None,
    settings: LawSettings,
    min_sizes: int = 2,
    min_lengths: int = 2,
) -> list[dict]:
    """Chained error at the target for every ladder subset of >= `min_sizes` sizes and
    >= `min_lengths` lengths (lengths ranked by tokens per parameter), with its compute 6ND."""
    d = step1_data(obs, task, accuracy_metric(task, obs), log_space=False)
    sizes = sorted(set(d.N.tolist()))
    tpp = np.round(d.D / d.N / 5) * 5  # lengths grouped by tokens per parameter
    lengths = sorted(set(tpp.tolist()))
    out = []
    for ns in range(min_sizes, len(sizes) + 1):
        for nl in range(min_lengths, len(lengths) + 1):
            subsets = itertools.product(
                itertools.combinations(sizes, ns), itertools.combinations(lengths, nl)
            )
            for keep_s, keep_l in subsets:
                mask = np.isin(d.N, keep_s) & np.isin(tpp, keep_l)
                runs = [r for r, m in zip(d.runs, mask, strict=True) if m]
                if len(runs) < 5:
                    continue
                try:
                    fit = fit_chained(TaskRows.of(obs.where(run=runs), task), settings)
                except InputError:
                    continue
                pred = float(fit.predict(*target)["acc"])
                row = {
                    "sizes": list(keep_s),
                    "tokens_per_param": list(keep_l),
                    "runs": runs,
                    "compute": float(np.sum(train_flops(d.N[mask], d.D[mask]))),
                    "predicted": pred,
                }
                if actual_acc is not None:
                    row["abs_error_points"] = abs(pred - actual_acc) * 100
                out.append(row)
    return out
