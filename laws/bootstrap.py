"""Parameter draws of a chained law: step 1 over ladder runs, step 2 over runs and then
their checkpoints (a two-level bootstrap: checkpoints of one run are not independent)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from .chained import ChainedFit
from .point_fit import step1_setup, step_inputs
from .step1 import bootstrap_step1
from .step2 import SIGMOID_BOUNDS, bootstrap_log_sigmoid, bootstrap_sigmoid
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
    c2 = checkpoint_counts(d2.runs, rng, B)
    if s.step2_form == "log_sigmoid":
        P2 = bootstrap_log_sigmoid(d2, np.array(fit.step2.params), c2)
    else:
        P2 = bootstrap_sigmoid(d2, np.array(fit.step2.params), c2, SIGMOID_BOUNDS)
    return replace(fit, step1=fit.step1.with_draws(P1), step2=fit.step2.with_draws(P2))


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
