"""Chained prediction (METHOD.md section 6): Acc_hat = Acc(L(N, D)), one task at a time.

`ChainedFitter(method, **settings).fit(observations, task)` returns a frozen, JSON-serialisable
`ChainedFit`. Its `predict(N, D)` answers at any (N, D) with an interval computed from the
bootstrap parameter draws it carries (low = high = point when fitted without a bootstrap).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from taskladder.common.errors import InputError
from taskladder.common.facts import CHANCE, TASKS

from .fitting import Solution, single_threaded_blas
from .observations import Observations
from .settings import LawSettings
from .step1 import (
    COMPUTE_PARAMS,
    FREE_BOUNDS,
    ND_PARAMS,
    PAPER_BOUNDS,
    PAPER_P0,
    Step1Data,
    bootstrap_step1,
    compute_loss,
    fit_step1,
    nd_loss,
    step1_data,
)
from .step2 import (
    LOGSIG_PARAMS,
    SIGMOID_BOUNDS,
    SIGMOID_PARAMS,
    Step2Data,
    bootstrap_log_sigmoid,
    bootstrap_sigmoid,
    fit_log_sigmoid,
    fit_sigmoid_grid,
    fit_sigmoid_paper,
    log_sigmoid,
    sigmoid,
    step2_data,
)
from .tasks import accuracy_metric

SCHEMA = "taskladder.chained_fit/1"
# A law that does not depend on one of its inputs (exponent or slope pinned at 0, a flat
# sigmoid) or did not converge is degenerate: its prediction should not be trusted.
_DEGENERATE_AT_BOUND = {"alpha", "beta", "k"}


@dataclass(frozen=True)
class StepFit:
    """One fitted step: its form, parameters, diagnostics, fit errors and bootstrap draws."""

    form: str
    names: tuple[str, ...]
    params: tuple[float, ...]
    objective: float
    converged: bool
    at_bound: tuple[str, ...]
    n_points: int
    n_starts: int
    errors: dict = field(default_factory=dict)
    draws: tuple[tuple[float, ...], ...] = ()

    def to_dict(self) -> dict:
        return {
            "form": self.form, "params": dict(zip(self.names, self.params, strict=True)),
            "objective": self.objective, "converged": self.converged, "at_bound": list(self.at_bound),
            "n_points": self.n_points, "n_starts": self.n_starts, "errors": dict(self.errors),
            "draws": [list(d) for d in self.draws],
        }

    @classmethod
    def from_dict(cls, d: dict) -> StepFit:
        return cls(
            form=d["form"], names=tuple(d["params"]), params=tuple(float(v) for v in d["params"].values()),
            objective=float(d["objective"]), converged=bool(d["converged"]), at_bound=tuple(d["at_bound"]),
            n_points=int(d["n_points"]), n_starts=int(d["n_starts"]), errors=dict(d.get("errors", {})),
            draws=tuple(tuple(float(v) for v in row) for row in d.get("draws", [])),
        )

    def with_draws(self, draws: np.ndarray) -> StepFit:
        sd = np.std(draws, axis=0) if len(draws) else np.zeros(len(self.params))
        errors = dict(self.errors, param_sd=dict(zip(self.names, map(float, sd), strict=True)))
        return StepFit(self.form, self.names, self.params, self.objective, self.converged, self.at_bound,
                       self.n_points, self.n_starts, errors, tuple(tuple(map(float, r)) for r in draws))


def step1_eval(form: str, p, N, D) -> np.ndarray:
    if form == "nd":
        return nd_loss(p, N, D)
    return compute_loss(p, 6.0 * np.asarray(N, dtype=float) * np.asarray(D, dtype=float))


def step2_eval(form: str, p, x) -> np.ndarray:
    return sigmoid(p, x) if form == "sigmoid" else log_sigmoid(p, x)


@dataclass(frozen=True)
class ChainedFit:
    """A fitted two-step law for one task; `predict(N, D)` -> point and interval arrays."""

    task: str
    acc_metric: str
    x_task: str
    x_metric: str
    chance: float
    method: str
    settings: LawSettings
    step1: StepFit
    step2: StepFit
    data_hash: str = ""
    backtest: dict | None = None

    # answers ---------------------------------------------------------------------------------
    def predict(self, N, D) -> dict[str, np.ndarray]:
        """Loss and accuracy at (N, D) (broadcast arrays) with the bootstrap interval."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        shape, n, d = N.shape, N.ravel(), D.ravel()
        if np.any(~np.isfinite(n) | (n <= 0)) or np.any(~np.isfinite(d) | (d <= 0)):
            raise InputError("predict: N and D must be finite and > 0")
        loss = step1_eval(self.step1.form, np.array(self.step1.params), n, d)
        acc = step2_eval(self.step2.form, np.array(self.step2.params), loss)
        out = {"loss": loss, "acc": acc, "loss_low": loss, "loss_high": loss, "acc_low": acc, "acc_high": acc}
        if self.step1.draws and self.step2.draws:
            L = step1_eval(self.step1.form, np.array(self.step1.draws), n, d)
            A = step2_eval(self.step2.form, np.array(self.step2.draws), L)
            q = [(1 - self.settings.level) / 2 * 100, (1 + self.settings.level) / 2 * 100]
            (ll, lh), (al, ah) = np.nanpercentile(L, q, axis=0), np.nanpercentile(A, q, axis=0)
            out.update(loss_low=np.minimum(ll, loss), loss_high=np.maximum(lh, loss),
                       acc_low=np.minimum(al, acc), acc_high=np.maximum(ah, acc))
        return {k: np.asarray(v, dtype=float).reshape(shape) for k, v in out.items()}

    @property
    def flags(self) -> dict:
        s1, s2 = self.step1, self.step2
        degenerate = (not s1.converged or not s2.converged
                      or bool(_DEGENERATE_AT_BOUND & set(s1.at_bound) | _DEGENERATE_AT_BOUND & set(s2.at_bound))
                      or (s2.form == "sigmoid" and abs(s2.params[0]) < 1e-6))
        return {
            "step1_converged": s1.converged, "step1_at_bound": list(s1.at_bound),
            "step2_converged": s2.converged, "step2_at_bound": list(s2.at_bound),
            "degenerate": bool(degenerate),
        }

    # JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA, "task": self.task, "acc_metric": self.acc_metric,
            "x_task": self.x_task, "x_metric": self.x_metric, "chance": self.chance,
            "method": self.method, "settings": self.settings.to_dict(),
            "step1": self.step1.to_dict(), "step2": self.step2.to_dict(),
            "flags": self.flags, "data_hash": self.data_hash, "backtest": self.backtest,
        }

    @classmethod
    def from_dict(cls, d: dict) -> ChainedFit:
        if d.get("schema") != SCHEMA:
            raise InputError(f"chained fit: unknown schema {d.get('schema')!r} (expected {SCHEMA})")
        return cls(
            task=d["task"], acc_metric=d["acc_metric"], x_task=d["x_task"], x_metric=d["x_metric"],
            chance=float(d["chance"]), method=d["method"], settings=LawSettings.from_dict(d["settings"]),
            step1=StepFit.from_dict(d["step1"]), step2=StepFit.from_dict(d["step2"]),
            data_hash=d.get("data_hash", ""), backtest=d.get("backtest"),
        )


class ChainedFitter:
    """Configured in __init__ (method + settings overrides), learns in `fit`."""

    def __init__(self, method: str = "default", settings: LawSettings | None = None, **overrides):
        self.settings = settings.replace(**overrides) if settings else LawSettings.preset(method, **overrides)
        self.method = self.settings.method

    def fit(self, observations: Observations, task: str) -> ChainedFit:
        with single_threaded_blas():
            return self._fit(observations, task)

    def _fit(self, observations: Observations, task: str) -> ChainedFit:
        if task not in TASKS:
            raise InputError(f"unknown task {task!r} (known: {', '.join(TASKS)})")
        s = self.settings
        check_ladder(observations, task)
        observations = observations.where(task=[task, "lm"])
        backtest = None
        if s.select == "backtest":
            from .backtest import select_settings  # backtest fits chained laws itself

            s, backtest = select_settings(observations, task, s)
        fit = fit_chained(observations, task, s)
        if s.n_bootstrap:
            fit = bootstrap(observations, fit)
        return ChainedFit(**{**fit.__dict__, "settings": s, "backtest": backtest,
                             "data_hash": _task_rows(observations, task, s).content_hash()})


def check_ladder(obs: Observations, task: str) -> None:
    """Enough runs and sizes for a fit, and the task's metrics present."""
    sub = obs.where(task=task)
    if len(sub) == 0:
        raise InputError(f"task {task!r}: no observations in the ladder")
    sizes, runs = set(sub.N.tolist()), sub.unique("run")
    if len(sizes) < 2:
        raise InputError(f"task {task!r}: the ladder has {len(sizes)} model size(s); a fit needs at least 2")
    if len(runs) < 5:
        raise InputError(f"task {task!r}: the ladder has {len(runs)} run(s); a step-1 fit needs at least 5")


def _feature(s: LawSettings, task: str) -> tuple[str, str]:
    if s.feature in ("bpb", "task_ce"):
        return task, s.feature
    return "lm", s.feature


def _task_rows(obs: Observations, task: str, s: LawSettings) -> Observations:
    x_task, _ = _feature(s, task)
    return obs.where(task=[task, x_task])


def _solution_fit(sol: Solution, form: str, names: tuple[str, ...], n_points: int, errors: dict) -> StepFit:
    return StepFit(form, names, tuple(map(float, sol.params)), sol.objective, sol.converged,
                   tuple(names[i] for i in sol.at_bound), n_points, sol.n_starts, errors)


def _step_inputs(obs: Observations, task: str, s: LawSettings) -> tuple[Step1Data, Step2Data]:
    x_task, x_metric = _feature(s, task)
    rows = obs.where(task=[task, x_task])
    d1 = step1_data(rows, x_task, x_metric, s.final_window)
    if s.step2_form == "log_sigmoid":
        d2 = step2_data(rows, task, x_metric, accuracy_metric(task), skip=0.5, window=1, anchor=False, x_task=x_task)
    else:
        d2 = step2_data(rows, task, x_metric, accuracy_metric(task), s.skip, s.window, s.anchor, x_task=x_task)
    return d1, d2


def _step1_setup(s: LawSettings, d1: Step1Data) -> tuple[Step1Data, list]:
    """Bounds of the step-1 form; the compute form uses C = 6ND (also what `predict` uses)."""
    bounds = PAPER_BOUNDS if s.step1_bounds == "paper" else FREE_BOUNDS
    if s.step1_form == "compute":
        return Step1Data(d1.runs, d1.N, d1.D, 6.0 * d1.N * d1.D, d1.y), [bounds[0], bounds[2], bounds[4]]
    return d1, bounds


def fit_chained(obs: Observations, task: str, s: LawSettings) -> ChainedFit:
    """The point fit of both steps with fixed settings."""
    x_task, x_metric = _feature(s, task)
    d1, d2 = _step_inputs(obs, task, s)
    d1, bounds = _step1_setup(s, d1)
    names1 = ND_PARAMS if s.step1_form == "nd" else COMPUTE_PARAMS
    p0 = (PAPER_P0 if s.step1_form == "nd" else (PAPER_P0[0], PAPER_P0[2], PAPER_P0[4])) if s.step1_starts == "paper" else None
    sol1 = _cached_step1(d1, s.step1_form, p0, bounds, s.huber_delta)
    fitted1 = step1_eval(s.step1_form, sol1.params, d1.N, d1.D)
    rel = (fitted1 - d1.y) / d1.y
    err1 = {"mean_abs_rel": float(np.mean(np.abs(rel))), "max_abs_rel": float(np.max(np.abs(rel)))}
    chance = CHANCE[task]
    if s.step2_form == "log_sigmoid":
        sol2, names2 = fit_log_sigmoid(d2), LOGSIG_PARAMS
    else:
        sol2 = fit_sigmoid_paper(d2, chance) if s.step2_starts == "paper" else fit_sigmoid_grid(d2, chance)
        names2 = SIGMOID_PARAMS
    res2 = step2_eval(s.step2_form, sol2.params, d2.x) - d2.y
    real = d2.runs != "<anchor>"
    err2 = {"rmse": float(np.sqrt(np.mean(res2[real] ** 2))), "mean_abs": float(np.mean(np.abs(res2[real])))}
    return ChainedFit(
        task=task, acc_metric=accuracy_metric(task), x_task=x_task, x_metric=x_metric, chance=chance,
        method=s.method, settings=s,
        step1=_solution_fit(sol1, s.step1_form, names1, len(d1.y), err1),
        step2=_solution_fit(sol2, s.step2_form, names2, len(d2.x), err2),
    )


_STEP1_CACHE: dict[tuple, Solution] = {}


def _cached_step1(d1: Step1Data, form: str, p0, bounds, delta: float) -> Solution:
    """Step 1 of an LM-loss feature is the same fit for every task: fit it once."""
    key = (form, p0, tuple(bounds), delta, d1.N.tobytes(), d1.D.tobytes(), d1.flops.tobytes(), d1.y.tobytes())
    if key not in _STEP1_CACHE:
        if len(_STEP1_CACHE) > 512:
            _STEP1_CACHE.clear()
        _STEP1_CACHE[key] = fit_step1(d1, form, p0, bounds, delta)
    return _STEP1_CACHE[key]


def bootstrap(obs: Observations, fit: ChainedFit) -> ChainedFit:
    """Parameter draws: step 1 over ladder runs, step 2 over runs and then their checkpoints."""
    s = fit.settings
    rng = np.random.default_rng(s.seed)
    d1, d2 = _step_inputs(obs, fit.task, s)
    B = s.n_bootstrap
    n_runs = len(d1.y)
    c1 = rng.multinomial(n_runs, np.full(n_runs, 1 / n_runs), size=B)
    d1, bounds = _step1_setup(s, d1)
    P1 = bootstrap_step1(d1, np.array(fit.step1.params), c1, s.step1_form, bounds, s.huber_delta)
    c2 = checkpoint_counts(d2.runs, rng, B)
    if s.step2_form == "log_sigmoid":
        P2 = bootstrap_log_sigmoid(d2, np.array(fit.step2.params), c2)
    else:
        P2 = bootstrap_sigmoid(d2, np.array(fit.step2.params), c2, SIGMOID_BOUNDS)
    return ChainedFit(**{**fit.__dict__, "step1": fit.step1.with_draws(P1), "step2": fit.step2.with_draws(P2)})


def checkpoint_counts(runs: np.ndarray, rng: np.random.Generator, B: int) -> np.ndarray:
    """Two-level resampling weights (B, points): runs with replacement, then each run's points."""
    names = [r for r in dict.fromkeys(runs.tolist()) if r != "<anchor>"]
    counts = np.zeros((B, len(runs)))
    run_counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=B)
    for j, name in enumerate(names):
        idx = np.flatnonzero(runs == name)
        counts[:, idx] = rng.multinomial(run_counts[:, j] * len(idx), np.full(len(idx), 1 / len(idx)))
    counts[:, runs == "<anchor>"] = 1.0
    return counts
