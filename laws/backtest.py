"""Backtests on the ladder itself, and the per-task choice of form they drive (`default`).

A backtest refits a chained law without part of the ladder and predicts what was held out:
``largest-size`` drops every run of the largest model size, ``longest-runs`` drops the runs
with the most tokens per parameter (>= 3/4 of the longest ratio). The error is the mean
absolute accuracy error over the held-out runs' final accuracies (mean of the last 5
checkpoints), in points. The `default` method fits every candidate form, scores each by the
mean of its backtest errors, and keeps the best; the target is never looked at.
"""

from __future__ import annotations

import numpy as np

from taskladder.common.errors import InputError

from .observations import Observations
from .settings import LawSettings
from .step1 import step1_data
from .tasks import accuracy_metric


def candidates(base: LawSettings) -> dict[str, LawSettings]:
    """The forms `default` chooses between (all with a grid of starts)."""
    fixed = base.replace(select="fixed", n_bootstrap=0)
    # (The paper's A, B >= 1 bounds are a subset of the free ones, which a grid search covers.)
    return {
        "task bpb": fixed,
        "task bpb, compute": fixed.replace(step1_form="compute"),
        "c4 loss": fixed.replace(feature="ce_c4_en"),
    }


def holdouts(obs: Observations, task: str) -> dict[str, tuple[list[str], list[str]]]:
    """name -> (training runs, held-out runs); splits that leave too little to fit are omitted."""
    d = step1_data(obs, task, accuracy_metric(task), log_space=False)
    runs = list(d.runs)
    tpp = d.D / d.N
    largest, longest = d.N >= d.N.max(), tpp >= 0.75 * tpp.max()
    splits = {  # the held-out runs of each split are those where the mask is False
        "largest-size": ~largest,
        "longest-runs": ~longest,
        "largest-longest": ~largest & ~longest,
    }
    out = {}
    for name, train in splits.items():
        test = largest & longest if name == "largest-longest" else ~train
        if train.sum() >= 5 and len(set(d.N[train].tolist())) >= 2 and test.any():
            out[name] = ([r for r, t in zip(runs, train, strict=True) if t], [r for r, t in zip(runs, test, strict=True) if t])
    return out


def backtest(obs: Observations, task: str, settings: LawSettings) -> dict[str, float]:
    """Mean absolute held-out accuracy error (points) per holdout split."""
    from .chained import fit_chained

    actual = step1_data(obs, task, accuracy_metric(task), settings.final_window, log_space=False)
    index = {r: i for i, r in enumerate(actual.runs)}
    out = {}
    for name, (train, test) in holdouts(obs, task).items():
        fit = fit_chained(obs.where(run=train), task, settings)
        i = np.array([index[r] for r in test])
        pred = fit.predict(actual.N[i], actual.D[i])["acc"]
        out[name] = float(np.mean(np.abs(pred - actual.y[i])) * 100)
    return out


def select_settings(obs: Observations, task: str, base: LawSettings) -> tuple[LawSettings, dict]:
    """The candidate with the lowest mean backtest error, and the scores of all candidates."""
    scores, best, best_err = {}, None, np.inf
    for label, cand in candidates(base).items():
        try:
            errs = backtest(obs, task, cand)
        except InputError as exc:  # e.g. no C4 loss in this ladder: not a candidate here
            scores[label] = {"skipped": str(exc)}
            continue
        mean = float(np.mean(list(errs.values()))) if errs else np.inf
        scores[label] = dict(errs, mean=mean)
        if mean < best_err:
            best, best_err = label, mean
    if best is None:
        best = next(iter(candidates(base)))
    chosen = candidates(base)[best].replace(n_bootstrap=base.n_bootstrap)
    return chosen, {"chosen": best, "scores": scores, "splits": {k: v[1] for k, v in holdouts(obs, task).items()}}
