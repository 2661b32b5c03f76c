"""The point fit of both steps of a chained law with fixed settings, and the inputs it reads.

`Step1Cache` lets one fitter reuse a step-1 solution: an LM-loss feature has the same step 1
for every task, and backtest folds repeat across candidates.
"""

from __future__ import annotations

import numpy as np

from taskladder.common.facts import train_flops

from .chained import ChainedFit, StepFit, step1_eval, step2_eval
from .fitting import Bounds, Solution
from .observations import Finals, Observations
from .resolve import concrete, feature_of
from .settings import LawSettings
from .step1 import (
    COMPUTE_PARAMS,
    FREE_BOUNDS,
    ND_PARAMS,
    PAPER_BOUNDS,
    PAPER_P0,
    fit_step1,
    log_covariance,
    relative_noise,
    step1_checkpoints,
    step1_data,
)
from .step2 import (
    LOGSIG_PARAMS,
    SIGMOID_PARAMS,
    Step2Data,
    fit_log_sigmoid,
    fit_sigmoid_floored,
    fit_sigmoid_grid,
    fit_sigmoid_paper,
    step2_data,
)
from .tasks import TaskRows


class Step1Cache:
    """Step-1 solutions keyed by their exact inputs. A fitter owns one: an LM-loss feature
    has the same step 1 for every task, and backtest folds repeat across candidates."""

    def __init__(self) -> None:
        self._fits: dict[tuple, Solution] = {}

    def fit(self, d1: Finals, form: str, p0, bounds: Bounds, delta: float) -> Solution:
        key = (
            form,
            p0,
            tuple(bounds),
            delta,
            d1.N.tobytes(),
            d1.D.tobytes(),
            d1.flops.tobytes(),
            d1.y.tobytes(),
        )
        if key not in self._fits:
            self._fits[key] = fit_step1(d1, form, p0, bounds, delta)
        return self._fits[key]


def _solution_fit(
    sol: Solution, form: str, names: tuple[str, ...], n_points: int, errors: dict
) -> StepFit:
    return StepFit(
        form,
        names,
        tuple(map(float, sol.params)),
        sol.objective,
        sol.converged,
        tuple(names[i] for i in sol.at_bound),
        n_points,
        sol.n_starts,
        errors,
    )


def step1_points(t: TaskRows, s: LawSettings) -> Finals:
    """The points step 1 is fitted to: one per run, or with a declared constant schedule
    every checkpoint past the skip."""
    s = concrete(s, t)
    x_task, x_metric = feature_of(s, t.task)
    rows = t.obs.where(task=x_task)
    if s.schedule == "constant":
        return step1_checkpoints(rows, x_task, x_metric, s.skip)
    return step1_data(rows, x_task, x_metric, s.final_window, fraction=s.final_fraction)


def step_inputs(t: TaskRows, s: LawSettings) -> tuple[Finals, Step2Data]:
    """The points each step is fitted to (step 1: `step1_points`; step 2: smoothed
    checkpoints)."""
    s = concrete(s, t)
    task, acc = t.task, t.acc_metric
    x_task, x_metric = feature_of(s, task)
    rows = t.obs.where(task=[task, x_task])
    d1 = step1_points(t, s)
    if s.step2_form == "log_sigmoid":
        skip, window, anchor = (0.5 if s.skip else 0.0), 1, False  # METHOD.md s. 7
    else:
        skip, window, anchor = s.skip, s.window, s.anchor
    d2 = step2_data(rows, task, x_metric, acc, skip, window, anchor, x_task=x_task)
    return d1, d2


def step1_setup(s: LawSettings, d1: Finals) -> tuple[Finals, Bounds]:
    """Bounds of the step-1 form; the compute form uses C = 6ND (also what `predict` uses)."""
    bounds = PAPER_BOUNDS if s.step1_bounds == "paper" else FREE_BOUNDS
    if s.step1_form == "compute":
        d1 = Finals(d1.runs, d1.N, d1.D, train_flops(d1.N, d1.D), d1.y)
        return d1, [bounds[0], bounds[2], bounds[4]]
    return d1, bounds


def _step1_sigma(
    obs: Observations, x_task: str, x_metric: str, s: LawSettings, resid: np.ndarray, n_par: int
) -> dict:
    """The SD of one step-1 point in ln L: the larger of the fit's residual SD (degrees of
    freedom counted) and the feature's checkpoint noise over the checkpoints a point averages
    (an exact fit of 3 runs still has its measurement noise)."""
    dof = len(resid) - n_par
    resid_sd = float(np.sqrt(np.sum(resid**2) / dof)) if dof > 0 else 0.0
    noise = relative_noise(obs, x_task, x_metric)
    if s.schedule != "constant":
        n = obs.finals(x_task, x_metric, s.final_window, len, fraction=s.final_fraction).y
        noise /= np.sqrt(max(1.0, float(n.min())))
    return {"resid_sd": resid_sd, "noise": float(noise), "sigma": max(resid_sd, float(noise))}


def solve_step1(s: LawSettings, d1: Finals, cache: Step1Cache | None = None) -> Solution:
    """Step 1 of concrete settings `s` fitted to its points `d1` (`step_inputs`)."""
    d1, bounds = step1_setup(s, d1)
    p0 = None
    if s.step1_starts == "paper":
        p0 = PAPER_P0 if s.step1_form == "nd" else (PAPER_P0[0], PAPER_P0[2], PAPER_P0[4])
    return (cache or Step1Cache()).fit(d1, s.step1_form, p0, bounds, s.huber_delta)


def fit_chained(t: TaskRows, s: LawSettings, cache: Step1Cache | None = None) -> ChainedFit:
    """The point fit of both steps with fixed settings (`auto` ones resolved on the task's
    rows)."""
    s = concrete(s, t)
    obs, task, chance = t.obs, t.task, t.chance
    x_task, x_metric = feature_of(s, task)
    d1, d2 = step_inputs(t, s)
    sol1 = solve_step1(s, d1, cache)
    d1 = step1_setup(s, d1)[0]
    names1 = ND_PARAMS if s.step1_form == "nd" else COMPUTE_PARAMS
    pred1 = step1_eval(s.step1_form, sol1.params, d1.N, d1.D)
    rel = (pred1 - d1.y) / d1.y
    err1 = {"mean_abs_rel": float(np.mean(np.abs(rel))), "max_abs_rel": float(np.max(np.abs(rel)))}
    err1.update(_step1_sigma(obs, x_task, x_metric, s, np.log(pred1 / d1.y), len(names1)))
    err1["log_cov"] = log_covariance(s.step1_form, sol1.params, d1, err1["sigma"]).tolist()
    if s.step2_form == "log_sigmoid":
        sol2, names2 = fit_log_sigmoid(d2), LOGSIG_PARAMS
    elif s.step2_floor == "chance":
        sol2, names2 = fit_sigmoid_floored(d2, chance), SIGMOID_PARAMS
    elif s.step2_starts == "paper":
        sol2, names2 = fit_sigmoid_paper(d2, chance), SIGMOID_PARAMS
    else:
        sol2, names2 = fit_sigmoid_grid(d2, chance), SIGMOID_PARAMS
    res2 = step2_eval(s.step2_form, sol2.params, d2.x) - d2.y
    real = d2.runs != "<anchor>"
    err2 = {
        "rmse": float(np.sqrt(np.mean(res2[real] ** 2))),
        "mean_abs": float(np.mean(np.abs(res2[real]))),
    }
    return ChainedFit(
        task=task,
        acc_metric=t.acc_metric,
        x_task=x_task,
        x_metric=x_metric,
        chance=chance,
        method=s.method,
        settings=s,
        step1=_solution_fit(sol1, s.step1_form, names1, len(d1.y), err1),
        step2=_solution_fit(sol2, s.step2_form, names2, len(d2.x), err2),
    )
