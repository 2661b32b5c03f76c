"""`ChainedFitter(method, **settings).fit(observations, task)` -> a frozen `ChainedFit`.

The fitter resolves the settings on the ladder, weighs candidate forms by backtests (the
`default` method, `backtest.py`), draws the bootstrap and records the diagnostics the trust
rules read. Configured in __init__, learns in `fit`.
"""

from __future__ import annotations

from dataclasses import replace

from .backtest import select_forms
from .bootstrap import bootstrap
from .chained import ChainedFit
from .fitting import single_threaded_blas
from .observations import Observations
from .point_fit import Step1Cache, fit_chained
from .resolve import check_ladder, resolve_settings
from .settings import LawSettings
from .tasks import TaskRows
from .trust import diagnostics


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
        t = TaskRows.of(observations, task, self.chance)  # resolved once, passed down
        s, notes = resolve_settings(self.settings, t)
        backtest = calibration = None
        members: tuple = ()
        if s.select == "backtest":
            chosen, backtest, calibration = select_forms(t, self.settings, self.cache)
            fits = [(w, fit_chained(t, c, self.cache)) for w, c in chosen]
            sound = [(w, f) for w, f in fits if not f.flags["degenerate"]]
            if sound and len(sound) < len(fits):  # a degenerate candidate loses its weight
                total = sum(w for w, _ in sound)
                fits = [(w / total, f) for w, f in sound]
            fit = max(fits, key=lambda m: m[0])[1]
            members = tuple(fits) if len(fits) > 1 else ()
            s = fit.settings.replace(n_bootstrap=s.n_bootstrap, select="backtest")
        else:
            fit = fit_chained(t, s, self.cache)
        if s.n_bootstrap:
            fit = bootstrap(t, replace(fit, settings=s))
        return replace(
            fit,
            settings=s,
            backtest=backtest,
            diagnostics=diagnostics(t.obs, fit, notes),
            members=members,
            calibration=calibration,
            method=self.method,
            data_hash=t.obs.where(task=[fit.task, fit.x_task]).content_hash(),
        )

