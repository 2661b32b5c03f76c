"""Chained prediction (METHOD.md section 6): Acc_hat = Acc(L(N, D)), one task at a time.

`ChainedFitter(method, **settings).fit(observations, task)` returns a frozen, JSON-serialisable
`ChainedFit`. Its `predict(N, D)` answers at any (N, D) with an interval: the bootstrap
parameter draws it carries, widened by the evaluation noise of the accuracy and the
disagreement between its weighted forms, scaled to the level its backtests call for
(`trust.py`). `assess(N, D)` says whether the number can be trusted there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from taskladder.common.errors import InputError

from .fitting import Bounds, Solution, single_threaded_blas
from .observations import Finals, Observations
from .settings import LawSettings
from .step1 import (
    COMPUTE_PARAMS,
    FREE_BOUNDS,
    ND_PARAMS,
    PAPER_BOUNDS,
    PAPER_P0,
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
from .tasks import accuracy_metric, chance_level
from .trust import assess, diagnostics, interval

SCHEMA = "taskladder.chained_fit/2"
_READ_SCHEMAS = ("taskladder.chained_fit/1", SCHEMA)
# A law that does not depend on one of its inputs (exponent or slope pinned at 0, a flat
# sigmoid) or did not converge is degenerate: its prediction should not be trusted.
_DEGENERATE_AT_BOUND = {"alpha", "beta", "k"}
_PARAM_NAMES = {
    "nd": ND_PARAMS,
    "compute": COMPUTE_PARAMS,
    "sigmoid": SIGMOID_PARAMS,
    "log_sigmoid": LOGSIG_PARAMS,
}


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
            "form": self.form,
            "params": dict(zip(self.names, self.params, strict=True)),
            "objective": self.objective,
            "converged": self.converged,
            "at_bound": list(self.at_bound),
            "n_points": self.n_points,
            "n_starts": self.n_starts,
            "errors": dict(self.errors),
            "draws": [list(d) for d in self.draws],
        }

    @classmethod
    def from_dict(cls, d: dict) -> StepFit:
        # parameter order is the form's, not the JSON's (a writer may have sorted the keys)
        names = _PARAM_NAMES.get(d["form"], tuple(d["params"]))
        if set(names) != set(d["params"]):
            raise InputError(
                f"chained fit: {d['form']} parameters {sorted(d['params'])} "
                f"(expected {list(names)})"
            )
        return cls(
            form=d["form"],
            names=names,
            params=tuple(float(d["params"][n]) for n in names),
            objective=float(d["objective"]),
            converged=bool(d["converged"]),
            at_bound=tuple(d["at_bound"]),
            n_points=int(d["n_points"]),
            n_starts=int(d["n_starts"]),
            errors=dict(d.get("errors", {})),
            draws=tuple(tuple(float(v) for v in row) for row in d.get("draws", [])),
        )

    def with_draws(self, draws: np.ndarray) -> StepFit:
        sd = np.std(draws, axis=0) if len(draws) else np.zeros(len(self.params))
        errors = dict(self.errors, param_sd=dict(zip(self.names, map(float, sd), strict=True)))
        return StepFit(
            self.form,
            self.names,
            self.params,
            self.objective,
            self.converged,
            self.at_bound,
            self.n_points,
            self.n_starts,
            errors,
            tuple(tuple(map(float, r)) for r in draws),
        )


def step1_eval(form: str, p, N, D) -> np.ndarray:
    if form == "nd":
        return nd_loss(p, N, D)
    return compute_loss(p, 6.0 * np.asarray(N, dtype=float) * np.asarray(D, dtype=float))


def step2_eval(form: str, p, x) -> np.ndarray:
    return sigmoid(p, x) if form == "sigmoid" else log_sigmoid(p, x)


@dataclass(frozen=True)
class ChainedFit:
    """A fitted two-step law for one task; `predict(N, D)` -> point and interval arrays.

    `members` (the `default` method) are weighted forms; the fit's own steps are those of
    the heaviest member. `diagnostics` holds what the trust rules read (noise, chance, the
    ladder's accuracy and feature ranges, settings that could not apply); `calibration` the
    normalised backtest residuals the interval is scaled by.
    """

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
    diagnostics: dict = field(default_factory=dict)
    members: tuple[tuple[float, ChainedFit], ...] = ()
    calibration: dict | None = None

    # answers ---------------------------------------------------------------------------------
    def point(self, n: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Feature and accuracy of this fit's own steps at flat arrays (n, d)."""
        loss = step1_eval(self.step1.form, np.array(self.step1.params), n, d)
        return loss, step2_eval(self.step2.form, np.array(self.step2.params), loss)

    def predict(self, N, D, level: float | None = None) -> dict[str, np.ndarray]:
        """Loss and accuracy at (N, D) (broadcast arrays) with the interval at `level`."""
        N, D = np.broadcast_arrays(np.asarray(N, dtype=float), np.asarray(D, dtype=float))
        shape, n, d = N.shape, N.ravel(), D.ravel()
        if np.any(~np.isfinite(n) | (n <= 0)) or np.any(~np.isfinite(d) | (d <= 0)):
            raise InputError("predict: N and D must be finite and > 0")
        level = self.settings.level if level is None else level
        loss, acc0 = self.point(n, d)
        acc, form_sd = acc0, np.zeros_like(acc0)
        if self.members:
            w = np.array([m[0] for m in self.members])
            accs = np.stack([m[1].point(n, d)[1] for m in self.members])
            acc = w @ accs
            form_sd = np.sqrt(w @ (accs - acc) ** 2)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        loss_lo = loss_hi = loss
        boot_lo = boot_hi = np.zeros_like(acc)
        if self.step1.draws and self.step2.draws:
            L = step1_eval(self.step1.form, np.array(self.step1.draws), n, d)
            A = step2_eval(self.step2.form, np.array(self.step2.draws), L)
            (ll, lh), (al, ah) = np.nanpercentile(L, q, axis=0), np.nanpercentile(A, q, axis=0)
            loss_lo, loss_hi = np.minimum(ll, loss), np.maximum(lh, loss)
            boot_lo, boot_hi = np.maximum(acc0 - al, 0), np.maximum(ah - acc0, 0)
        distance = self._distance(loss)
        lo, hi = interval(
            acc,
            boot_lo,
            boot_hi,
            form_sd,
            self.diagnostics,
            self.calibration,
            level,
            distance,
            self.method != "paper",
        )
        out = {
            "loss": loss,
            "acc": acc,
            "loss_low": loss_lo,
            "loss_high": loss_hi,
            "acc_low": lo,
            "acc_high": hi,
            "form_sd": form_sd,
            "distance": distance,
        }
        return {k: np.asarray(v, dtype=float).reshape(shape) for k, v in out.items()}

    def _distance(self, loss: np.ndarray) -> np.ndarray:
        """How far below the ladder's feature range the feature is, in units of that range."""
        lo, hi = self.diagnostics.get("feature_min"), self.diagnostics.get("feature_max")
        if lo is None or hi is None:
            return np.zeros_like(loss)
        return np.maximum((lo - loss) / max(hi - lo, 1e-12), 0.0)

    def assess(self, N: float, D: float) -> tuple[str, list[str]]:
        """(`ok` | `caution` | `unpredictable`, reasons) for a prediction at (N, D)."""
        p = self.predict(N, D)
        return assess(
            self.diagnostics, self.flags["degenerate"], float(p["acc"]), float(p["distance"])
        )

    @property
    def flags(self) -> dict:
        s1, s2 = self.step1, self.step2
        at_bound = _DEGENERATE_AT_BOUND & (set(s1.at_bound) | set(s2.at_bound))
        degenerate = (
            not s1.converged
            or not s2.converged
            or bool(at_bound)
            or (s2.form == "sigmoid" and abs(s2.params[0]) < 1e-6)
        )
        return {
            "step1_converged": s1.converged,
            "step1_at_bound": list(s1.at_bound),
            "step2_converged": s2.converged,
            "step2_at_bound": list(s2.at_bound),
            "degenerate": bool(degenerate),
        }

    # JSON ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA,
            "task": self.task,
            "acc_metric": self.acc_metric,
            "x_task": self.x_task,
            "x_metric": self.x_metric,
            "chance": self.chance,
            "method": self.method,
            "settings": self.settings.to_dict(),
            "step1": self.step1.to_dict(),
            "step2": self.step2.to_dict(),
            "flags": self.flags,
            "data_hash": self.data_hash,
            "backtest": self.backtest,
            "diagnostics": self.diagnostics,
            "calibration": self.calibration,
            "members": [{"weight": w, "fit": m.to_dict()} for w, m in self.members],
        }

    @classmethod
    def from_dict(cls, d: dict) -> ChainedFit:
        if d.get("schema") not in _READ_SCHEMAS:
            raise InputError(f"chained fit: unknown schema {d.get('schema')!r} (expected {SCHEMA})")
        return cls(
            task=d["task"],
            acc_metric=d["acc_metric"],
            x_task=d["x_task"],
            x_metric=d["x_metric"],
            chance=float(d["chance"]),
            method=d["method"],
            settings=LawSettings.from_dict(d["settings"]),
            step1=StepFit.from_dict(d["step1"]),
            step2=StepFit.from_dict(d["step2"]),
            data_hash=d.get("data_hash", ""),
            backtest=d.get("backtest"),
            diagnostics=dict(d.get("diagnostics") or {}),
            calibration=d.get("calibration"),
            members=tuple(
                (float(m["weight"]), cls.from_dict(m["fit"])) for m in d.get("members") or []
            ),
        )


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


class ChainedFitter:
    """Configured in __init__ (method, settings overrides, chance levels), learns in `fit`."""

    def __init__(
        self,
        method: str = "default",
        settings: LawSettings | None = None,
        chance: dict[str, float] | None = None,
        **overrides,
    ):
        self.settings = (
            settings.replace(**overrides) if settings else LawSettings.preset(method, **overrides)
        )
        self.method = self.settings.method
        self.chance = dict(chance or {})
        self.cache = Step1Cache()

    def fit(self, observations: Observations, task: str) -> ChainedFit:
        with single_threaded_blas():
            return self._fit(observations, task)

    def _fit(self, observations: Observations, task: str) -> ChainedFit:
        check_ladder(observations, task)
        chance = chance_level(task, observations, self.chance)
        obs = observations.where(task=[task, "lm"])
        s, notes = resolve_settings(self.settings, obs, task)
        backtest = calibration = None
        members: tuple = ()
        if s.select == "backtest":
            from .backtest import select_forms  # backtests fit chained laws themselves

            chosen, backtest, calibration = select_forms(
                obs, task, self.settings, chance, self.cache
            )
            fits = [(w, fit_chained(obs, task, c, chance, self.cache)) for w, c in chosen]
            sound = [(w, f) for w, f in fits if not f.flags["degenerate"]]
            if sound and len(sound) < len(fits):  # a degenerate candidate loses its weight
                total = sum(w for w, _ in sound)
                fits = [(w / total, f) for w, f in sound]
            fit = max(fits, key=lambda m: m[0])[1]
            members = tuple(fits) if len(fits) > 1 else ()
            s = fit.settings.replace(n_bootstrap=s.n_bootstrap, select="backtest")
        else:
            fit = fit_chained(obs, task, s, chance, self.cache)
        if s.n_bootstrap:
            fit = bootstrap(obs, replace(fit, settings=s))
        return replace(
            fit,
            settings=s,
            backtest=backtest,
            diagnostics=diagnostics(obs, fit, notes),
            members=members,
            calibration=calibration,
            method=self.method,
            data_hash=task_rows(obs, fit).content_hash(),
        )


def check_ladder(obs: Observations, task: str) -> None:
    """Enough runs and sizes for a fit, and the task's accuracy present."""
    sub = obs.where(task=task)
    if len(sub) == 0:
        raise InputError(f"task {task!r}: no observations in the ladder")
    metric = accuracy_metric(task, obs)
    if len(sub.where(metric=metric)) == 0:
        raise InputError(f"--tasks: task {task!r} has no accuracy column ({metric}) in the ladder")
    sizes, runs = set(sub.N.tolist()), sub.unique("run")
    if len(sizes) < 2:
        raise InputError(
            f"task {task!r}: the ladder has {len(sizes)} model size(s); a fit needs at least 2"
        )
    if len(runs) < 5:
        raise InputError(
            f"task {task!r}: the ladder has {len(runs)} run(s); a step-1 fit needs at least 5"
        )


def features(obs: Observations, task: str) -> list[str]:
    """The intermediate features the ladder has for a task, in `auto`'s order of preference:
    task bpb, TaskCE, then the LM losses (C4 first)."""
    have = set(obs.where(task=task).metric.tolist())
    out = [f for f in ("bpb", "task_ce") if f in have]
    lm = sorted(set(obs.where(task="lm").metric.tolist()), key=lambda m: (m != "ce_c4_en", m))
    return out + [m for m in lm if m.startswith("ce_")]


def resolve_settings(s: LawSettings, obs: Observations, task: str) -> tuple[LawSettings, list]:
    """`auto` feature and step-1 form made concrete for this ladder; settings that cannot
    apply to it (skip and smoothing on a final-only ladder) turned off, with a note each."""
    notes = []
    have = features(obs, task)
    if s.feature == "auto":
        if not have:
            raise InputError(
                f"--feature: the ladder has no feature for task {task!r} "
                "(no bpb, task_ce or lm ce_<set>)"
            )
        s = s.replace(feature=have[0])
    elif s.feature not in have:
        raise InputError(
            f"--feature: the ladder lacks {s.feature!r} for task {task!r} "
            f"(it has: {', '.join(have) or 'none'})"
        )
    acc = obs.finals(task, accuracy_metric(task, obs), 1)
    if s.step1_form == "auto":
        ratios = set(np.round(np.log2(acc.D / acc.N), 1).tolist())
        s = s.replace(step1_form="nd" if len(ratios) >= 2 and len(acc.runs) >= 5 else "compute")
    per_run = obs.checkpoints_per_run(task, accuracy_metric(task, obs))
    if max(per_run.values()) <= 1:
        changed = {
            k: v
            for k, v in (("skip", 0.0), ("window", 1), ("final_window", 1))
            if getattr(s, k) != v
        }
        if changed:
            notes.append(
                "final-only ladder: "
                + ", ".join(f"{k}={getattr(s, k)} cannot apply" for k in changed)
                + " (step 2 fits final points)"
            )
            s = s.replace(**changed)
    return s, notes


def _concrete(s: LawSettings, obs: Observations, task: str) -> LawSettings:
    return resolve_settings(s, obs, task)[0] if "auto" in (s.feature, s.step1_form) else s


def _feature(s: LawSettings, task: str) -> tuple[str, str]:
    if s.feature in ("bpb", "task_ce"):
        return task, s.feature
    return "lm", s.feature


def task_rows(obs: Observations, fit: ChainedFit) -> Observations:
    """The rows a fit reads: the task's own and those of its feature."""
    return obs.where(task=[fit.task, fit.x_task])


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


def step_inputs(obs: Observations, task: str, s: LawSettings) -> tuple[Finals, Step2Data]:
    """The points each step is fitted to (step 1: one per run; step 2: smoothed checkpoints)."""
    s = _concrete(s, obs, task)
    x_task, x_metric = _feature(s, task)
    rows = obs.where(task=[task, x_task])
    acc = accuracy_metric(task, obs)
    d1 = step1_data(rows, x_task, x_metric, s.final_window)
    if s.step2_form == "log_sigmoid":
        skip, window, anchor = (0.5 if s.skip else 0.0), 1, False  # METHOD.md s. 7
    else:
        skip, window, anchor = s.skip, s.window, s.anchor
    d2 = step2_data(rows, task, x_metric, acc, skip, window, anchor, x_task=x_task)
    return d1, d2


def _step1_setup(s: LawSettings, d1: Finals) -> tuple[Finals, Bounds]:
    """Bounds of the step-1 form; the compute form uses C = 6ND (also what `predict` uses)."""
    bounds = PAPER_BOUNDS if s.step1_bounds == "paper" else FREE_BOUNDS
    if s.step1_form == "compute":
        d1 = Finals(d1.runs, d1.N, d1.D, 6.0 * d1.N * d1.D, d1.y)
        return d1, [bounds[0], bounds[2], bounds[4]]
    return d1, bounds


def fit_chained(
    obs: Observations,
    task: str,
    s: LawSettings,
    chance: float | None = None,
    cache: Step1Cache | None = None,
) -> ChainedFit:
    """The point fit of both steps with fixed settings (`auto` ones resolved on `obs`)."""
    s = _concrete(s, obs, task)
    chance = chance_level(task, obs) if chance is None else chance
    x_task, x_metric = _feature(s, task)
    d1, d2 = step_inputs(obs, task, s)
    d1, bounds = _step1_setup(s, d1)
    names1 = ND_PARAMS if s.step1_form == "nd" else COMPUTE_PARAMS
    p0 = None
    if s.step1_starts == "paper":
        p0 = PAPER_P0 if s.step1_form == "nd" else (PAPER_P0[0], PAPER_P0[2], PAPER_P0[4])
    sol1 = (cache or Step1Cache()).fit(d1, s.step1_form, p0, bounds, s.huber_delta)
    rel = (step1_eval(s.step1_form, sol1.params, d1.N, d1.D) - d1.y) / d1.y
    err1 = {"mean_abs_rel": float(np.mean(np.abs(rel))), "max_abs_rel": float(np.max(np.abs(rel)))}
    if s.step2_form == "log_sigmoid":
        sol2, names2 = fit_log_sigmoid(d2), LOGSIG_PARAMS
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
        acc_metric=accuracy_metric(task, obs),
        x_task=x_task,
        x_metric=x_metric,
        chance=chance,
        method=s.method,
        settings=s,
        step1=_solution_fit(sol1, s.step1_form, names1, len(d1.y), err1),
        step2=_solution_fit(sol2, s.step2_form, names2, len(d2.x), err2),
    )


def bootstrap(obs: Observations, fit: ChainedFit) -> ChainedFit:
    """Parameter draws: step 1 over ladder runs, step 2 over runs and then their checkpoints."""
    s = fit.settings
    rng = np.random.default_rng(s.seed)
    d1, d2 = step_inputs(obs, fit.task, s)
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
