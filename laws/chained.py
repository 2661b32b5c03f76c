"""A fitted chained law (METHOD.md section 6): Acc_hat = Acc(L(N, D)) for one task.

`ChainedFit` is frozen and JSON-serialisable; `ChainedFitter` (`fitter.py`) makes one. Its
`predict(N, D)` answers at any (N, D) with an interval: the bootstrap parameter draws it
carries, widened by the evaluation noise of the accuracy and the disagreement between its
weighted forms, scaled to the level its backtests call for (`trust.py`). `assess(N, D)` says
whether the number can be trusted there.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import ndtri

from taskladder.common.errors import InputError
from taskladder.common.facts import train_flops

from .settings import LawSettings
from .step1 import COMPUTE_PARAMS, ND_PARAMS, compute_loss, log_jac, nd_loss
from .step2 import LOGSIG_PARAMS, SIGMOID_PARAMS, log_sigmoid, sigmoid
from .trust import (
    LOSS_INTERVAL_FACTOR,
    UNVOUCHED_SHARE,
    assess,
    assess_loss,
    beyond_reach,
    centre_distance,
    conformal_quantile,
    conformal_rank,
    edge_point,
    extrapolation,
    extrapolation_checks,
    interval,
    loss_halfwidth,
    loss_problems,
    unvouched,
)

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
    return compute_loss(p, train_flops(np.asarray(N, dtype=float), np.asarray(D, dtype=float)))


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
        # a fitted sigmoid's floor a + b may lie below 0 (bounds a in [-1, 0], b in [0, 1]),
        # and at a loss far above the ladder's it answers below 0: no accuracy does
        loss, acc0 = self.point(n, d)
        acc0 = np.clip(acc0, 0.0, 1.0)
        acc, form_sd = acc0, np.zeros_like(acc0)
        if self.members:
            w = np.array([m[0] for m in self.members])
            accs = np.clip(np.stack([m[1].point(n, d)[1] for m in self.members]), 0.0, 1.0)
            acc = w @ accs
            form_sd = np.sqrt(w @ (accs - acc) ** 2)
        q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
        loss_lo = loss_hi = loss
        boot_lo = boot_hi = np.zeros_like(acc)
        diag = self.diagnostics
        if self.step1.draws and self.step2.draws:
            L = step1_eval(self.step1.form, np.array(self.step1.draws), n, d)
            A = step2_eval(self.step2.form, np.array(self.step2.draws), L)
            (ll, lh), (al, ah) = np.nanpercentile(L, q, axis=0), np.nanpercentile(A, q, axis=0)
            loss_lo, loss_hi = np.minimum(ll, loss), np.maximum(lh, loss)
            jk = self.step2.errors.get("jackknife")
            if jk and self.method != "paper":  # one point per run (`bootstrap.jackknife`)
                al, ah = self._jackknife_plus(jk, L, loss, acc0, level, q)
                diag = dict(diag, final_noise=0.0)  # its left-out residuals hold that noise
            boot_lo, boot_hi = np.maximum(acc0 - al, 0), np.maximum(ah - acc0, 0)
        unvouched_hw = np.zeros_like(loss)
        if self.method != "paper" and "log_cov" in self.step1.errors:
            unvouched_hw = self._unvouched_halfwidth(n, d, loss)
            hw = np.maximum.reduce([
                self._loss_halfwidth(n, d, level),
                loss_halfwidth(self.calibration, level, self._loss_distance(n, d)),
                unvouched_hw,
            ])
            loss_lo, loss_hi = (
                np.minimum(loss_lo, loss * np.exp(-hw)),
                np.maximum(loss_hi, loss * np.exp(hw)),
            )
        # a bound the fit cannot pin (overflowed, NaN draws) is the widest a report holds
        loss_lo = np.fmax(loss_lo, loss / LOSS_INTERVAL_FACTOR)
        loss_hi = np.fmin(loss_hi, loss * LOSS_INTERVAL_FACTOR)
        distance = self._distance(loss)
        # the accuracy's backtests calibrate it in the directions they went; beyond the
        # ladder in a direction none went, it carries the loss's uncertainty through step 2
        s2 = np.array(self.step2.params)
        ends = loss * np.exp(np.stack([unvouched_hw, -unvouched_hw]))
        image = step2_eval(self.step2.form, s2, ends)
        lo, hi = interval(
            acc,
            boot_lo,
            boot_hi,
            form_sd,
            diag,
            self.calibration,
            level,
            distance,
            self.method != "paper",
            (np.maximum(acc0 - image.min(axis=0), 0), np.maximum(image.max(axis=0) - acc0, 0)),
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

    def _jackknife_plus(self, jk: dict, L: np.ndarray, loss, acc0, level: float, q) -> tuple:
        """Step 2's accuracy bounds where it has one point per run: the jackknife+ bounds at
        `level` at the point loss (Barber et al. 2021: the leave-one-run-out refits'
        predictions minus / plus their left-out residuals, at the conformal rank; too few
        runs for it, the extremes with each residual at least `conformal_quantile`'s
        small-sample bound of them all), and the step-1 draws of the loss (rows of `L`)
        carried through the fitted sigmoid, added in quadrature: each is a bound at `level`,
        so taking the jackknife+ bound of every draw at the draws' percentile counted the
        level twice."""
        P, R = np.array(jk["params"]), np.array(jk["residuals"])
        f = np.stack([step2_eval(self.step2.form, p, loss) for p in P])  # (runs, targets)
        k = conformal_rank(len(R), level)
        if k > len(R):  # too few runs for the rank: each residual at least their bound
            R, k = np.maximum(R, conformal_quantile(R.tolist(), level)), len(R)
        lo = np.sort(f - R[:, None], axis=0)[len(R) - k]
        hi = np.sort(f + R[:, None], axis=0)[k - 1]
        A = step2_eval(self.step2.form, np.array(self.step2.params), L)  # (draws, targets)
        al, ah = np.nanpercentile(A, q, axis=0)
        lo_h = np.hypot(np.maximum(acc0 - lo, 0), np.maximum(acc0 - al, 0))
        hi_h = np.hypot(np.maximum(hi - acc0, 0), np.maximum(ah - acc0, 0))
        return acc0 - lo_h, acc0 + hi_h

    def _loss_halfwidth(self, n: np.ndarray, d: np.ndarray, level: float) -> np.ndarray:
        """Half-width in ln L: the delta method at (n, d) from the step-1 covariance."""
        g = log_jac(self.step1.form, np.array(self.step1.params), n, d)
        var = np.einsum("np,pq,nq->n", g, np.array(self.step1.errors["log_cov"]), g)
        return ndtri((1 + level) / 2) * np.sqrt(np.maximum(var, 0.0))

    def _unvouched_halfwidth(self, n: np.ndarray, d: np.ndarray, loss: np.ndarray) -> np.ndarray:
        """Half-width in ln L where the target lies beyond the ladder in a direction no
        backtest went (`trust.unvouched`): per such direction, its `UNVOUCHED_SHARE` of the
        predicted change from the ladder's edge in that direction. No backtest measured how
        wrong the law's change in that direction can be, so the share is what backtests that
        could missed."""
        diag = self.diagnostics
        hw = np.zeros_like(loss)
        if "ladder_N" not in diag:
            return hw
        p = np.array(self.step1.params)
        for direction in unvouched(self.calibration):
            edge = edge_point(n, d, diag["ladder_N"], diag["ladder_D"], direction)
            change = np.abs(np.log(loss / step1_eval(self.step1.form, p, *edge)))
            hw += UNVOUCHED_SHARE[direction] * change
        return hw

    def extrapolation(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Doublings of N and of tokens per parameter beyond the ladder (`trust.extrapolation`)."""
        diag = self.diagnostics
        if "ladder_N" not in diag:
            return np.zeros_like(np.asarray(n, dtype=float))
        return extrapolation(n, d, diag["ladder_N"], diag["ladder_D"])

    def _loss_distance(self, n: np.ndarray, d: np.ndarray) -> np.ndarray:
        """The distance the loss scores were divided by: from the ladder's middle
        (`trust.centre_distance`), or beyond its edges in calibrations that predate it."""
        diag = self.diagnostics
        if (self.calibration or {}).get("loss_distance") != "centre" or "ladder_N" not in diag:
            return self.extrapolation(n, d)
        return centre_distance(n, d, diag["ladder_N"], diag["ladder_D"])

    def _distance(self, loss: np.ndarray) -> np.ndarray:
        """How far below the ladder's feature range the feature is, in units of that range."""
        lo, hi = self.diagnostics.get("feature_min"), self.diagnostics.get("feature_max")
        if lo is None or hi is None:
            return np.zeros_like(loss)
        return np.maximum((lo - loss) / max(hi - lo, 1e-12), 0.0)

    def statuses(self, N: float, D: float) -> dict[str, tuple[str, list[str]]]:
        """{"loss": (status, reasons), "acc": (status, reasons)} at (N, D): each prediction
        judged on its own (`trust.py`); an accuracy resting on an unpredictable loss is
        unpredictable too, but a trusted loss keeps its `ok` when only step 2 fails."""
        p = self.predict(N, D)
        s1, flags = self.step1, self.flags
        loss_wrong, acc_wrong = extrapolation_checks(
            self.diagnostics,
            lambda n, d: float(step1_eval(s1.form, np.array(s1.params), [n], [d])[0]),
            s1.form,
            dict(zip(s1.names, s1.params, strict=True)),
            s1.at_bound,
            (N, D),
            float(p["acc"]),
        )
        loss_wrong = loss_problems(flags["step1_degenerate"], loss_wrong)
        extrapolated = float(self.extrapolation(np.array([N]), np.array([D]))[0])
        reach = (self.calibration or {}).get("reach")
        calibrated = self.method != "paper"
        ln_l = np.log(np.maximum([p["loss_low"], p["loss"], p["loss_high"]], 1e-300))
        loss = assess_loss(
            self.diagnostics,
            loss_wrong,
            beyond_reach(extrapolated, reach) if calibrated else (),
            float(max(ln_l[1] - ln_l[0], ln_l[2] - ln_l[1])),
        )
        acc_wrong = [f"loss: {r}" for r in loss_wrong] + acc_wrong
        acc = assess(
            self.diagnostics,
            flags["step2_degenerate"],
            float(p["acc"]),
            float(p["distance"]),
            acc_wrong,
            float(p["acc_high"] - p["acc_low"]) / 2 if calibrated else None,
            extrapolated,
            reach,
        )
        return {"loss": loss, "acc": acc}

    def assess(self, N: float, D: float) -> tuple[str, list[str]]:
        """(`ok` | `caution` | `unpredictable`, reasons) of the accuracy prediction at (N, D)."""
        return self.statuses(N, D)["acc"]

    @property
    def interval_kind(self) -> str:
        """What the intervals rest on: ``calibrated`` (the backtests' conformal scores, every
        method but `paper`), ``bootstrap`` (the paper's method: its parameter draws alone,
        not calibrated) or ``none`` (the paper's method without draws: a point)."""
        if self.method != "paper":
            return "calibrated"
        return "bootstrap" if self.step1.draws and self.step2.draws else "none"

    @property
    def flags(self) -> dict:
        s1, s2 = self.step1, self.step2
        step1_degenerate = not s1.converged or bool(_DEGENERATE_AT_BOUND & set(s1.at_bound))
        step2_degenerate = (
            not s2.converged
            or bool(_DEGENERATE_AT_BOUND & set(s2.at_bound))
            or (s2.form == "sigmoid" and abs(s2.params[0]) < 1e-6)
        )
        return {
            "step1_converged": s1.converged,
            "step1_at_bound": list(s1.at_bound),
            "step2_converged": s2.converged,
            "step2_at_bound": list(s2.at_bound),
            "step1_degenerate": step1_degenerate,
            "step2_degenerate": step2_degenerate,
            "degenerate": step1_degenerate or step2_degenerate,
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
