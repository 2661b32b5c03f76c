"""Parameter draws of a chained law: step 1 over ladder runs, step 2 over runs and then
their checkpoints (a two-level bootstrap: checkpoints of one run are not independent); where
step 2 has one point per run (a final-only ladder), also its leave-one-run-out refits."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .chained import ChainedFit, step2_eval
from .point_fit import step1_setup, step_inputs
from .step1 import bootstrap_step1
from .step2 import bootstrap_log_sigmoid, bootstrap_sigmoid
from .tasks import TaskRows


def bootstrap(t: TaskRows, fit: ChainedFit) -> ChainedFit:
    """Parameter draws: step 1 over ladder runs, step 2 over runs and then their checkpoints."""
    s = fit.settings
    rng = np.random.default_rng(s.seed)
    d1, d2 = step_inputs(t, s)
    B = s.n_bootstrap
    if s.schedule == "constant":  # several points per run: runs, then their checkpoints
        c1 = checkpoint_counts(np.array(d1.runs, dtype=object), rng, B)
    else:
        n_runs = len(d1.y)
        c1 = rng.multinomial(n_runs, np.full(n_runs, 1 / n_runs), size=B)
    d1, bounds = step1_setup(s, d1)
    P1 = bootstrap_step1(d1, np.array(fit.step1.params), c1, s.step1_form, bounds, s.huber_delta)
    p2 = np.array(fit.step2.params)

    def refit(counts):
        if s.step2_form == "log_sigmoid":
            return bootstrap_log_sigmoid(d2, p2, counts)
        return bootstrap_sigmoid(d2, p2, counts, fit.chance if s.step2_floor == "chance" else None)

    step2 = fit.step2.with_draws(refit(checkpoint_counts(d2.runs, rng, B)))
    if one_point_per_run(d2.runs):
        step2 = replace(step2, errors=dict(step2.errors, jackknife=jackknife(d2, fit, refit)))
    return replace(fit, step1=fit.step1.with_draws(P1), step2=step2)


def one_point_per_run(runs: np.ndarray) -> bool:
    """Whether each ladder run gives step 2 one point (a final-only ladder)."""
    real = [r for r in runs.tolist() if r != "<anchor>"]
    return len(set(real)) == len(real)


def jackknife(d2, fit: ChainedFit, refit) -> dict:
    """Step 2 refitted without each ladder run in turn: {"params": one row per run left out,
    "residuals": |its accuracy - the refit's prediction at its loss|}, for the jackknife+
    interval (`ChainedFit.predict`). Why not the run bootstrap alone: with one point per run,
    a resample keeps about 5 of 8 distinct runs, often bunched in loss, and the refits
    scatter over sigmoids the full ladder rules out (90% intervals of +-20-50 points for
    predictions that missed by 0-5, docs/benchmarks.md); leaving one run out keeps the
    design but still sees how far one run steers the curve."""
    real = np.flatnonzero(d2.runs != "<anchor>")
    counts = np.ones((len(real), len(d2.y)))
    counts[np.arange(len(real)), real] = 0.0
    P = refit(counts)
    pred = step2_eval(fit.step2.form, P, d2.x[real][:, None])[:, 0]
    return {"params": P.tolist(), "residuals": np.abs(d2.y[real] - pred).tolist()}


def checkpoint_counts(runs: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    """Two-level resampling weights (B, points): runs with replacement, then each run's points."""
    names = [r for r in dict.fromkeys(runs.tolist()) if r != "<anchor>"]
    counts = np.zeros((B, len(runs)))
    run_counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=B)
    for j, name in enumerate(names):
        idx = np.flatnonzero(runs == name)
        counts[:, idx] = rng.multinomial(
            run_counts[:, j] * len(idx), np.full(len(idx), 1 / len(idx))
        )
    counts[:, runs == "<anchor>"] = 1.0
    return counts
