"""How a chained law is fitted: one frozen settings object, with the two methods as presets.

`LawSettings.paper()` is the paper's procedure exactly (single start with its p0 and bounds,
skip 10%, moving average 5, anchor point), minus the reference code's bugs (METHOD.md s. 8).
`LawSettings.default()` is what we ship: the paper's procedure on candidate features,
weighted per task by backtests on the ladder itself (`backtest.py`), a bootstrap, and a
calibrated interval (`trust.py`). Grid starts and free bounds stay available as settings.
`feature="auto"` picks the task's bpb, else its TaskCE, else an LM loss (C4 first);
`step1_form="auto"` the (N, D) form where the ladder has several lengths per size, else
compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from taskladder.common.errors import FieldError

METHODS = ("paper", "default")
# The paper's "last 5 checkpoints" span 2-9% of a run's tokens on its ladder; a share of the
# tokens keeps a run with few checkpoints from averaging in a mid-run one.
FINAL_FRACTION = 0.05


MAX_BOOTSTRAP = 100_000  # draws (default 200); each is one fit per task


@dataclass(frozen=True)
class LawSettings:
    method: str = "paper"
    # step 1 ----------------------------------------------------------------------------------
    step1_form: str = "nd"  # "nd": A/N^alpha + B/D^beta + E; "compute": A/C^alpha + E (C = 6ND)
    feature: str = "auto"  # task "bpb", "task_ce", an LM loss "ce_<set>", or "auto"
    step1_bounds: str = "paper"  # "paper": all params >= 0; "free": A, B < 1 allowed
    step1_starts: str = "paper"  # "paper": p0 = [3, 6, 0.1, 0.2, 1]; "grid": best of a grid
    huber_delta: float = 1e-3
    final_window: int = 5  # step-1 y = mean of the last checkpoints of each run
    # > 0: instead, the mean of the checkpoints in that last share of a run's tokens
    final_fraction: float = 0.0
    # "cosine" (any decaying schedule): a mid-run checkpoint is not a finished run, step 1
    # fits one point per run; "constant": every checkpoint is one (step 1 fits them all)
    schedule: str = "cosine"
    # step 2 ----------------------------------------------------------------------------------
    step2_form: str = "sigmoid"  # "sigmoid" or "log_sigmoid" (TaskCE)
    step2_starts: str = "paper"  # "paper": p0 = [chance - 1, 0.9, 3, 1]; "grid"
    # "fitted": the sigmoid's floor a + b is a parameter; "chance": fixed at the task's chance
    # accuracy; "auto": chance where step 2 has one point per run (a final-only ladder)
    step2_floor: str = "fitted"
    skip: float = 0.1
    window: int = 5
    anchor: bool = True
    # uncertainty and form selection ------------------------------------------------------------
    n_bootstrap: int = 0
    level: float = 0.9
    seed: int = 0
    select: str = "fixed"  # "fixed": these settings; "backtest": best of `candidates()`

    @classmethod
    def paper(cls, **overrides) -> LawSettings:
        return cls(method="paper").replace(**overrides)

    @classmethod
    def default(cls, **overrides) -> LawSettings:
        return cls(
            method="default",
            step1_form="auto",
            final_fraction=FINAL_FRACTION,
            step2_floor="auto",
            n_bootstrap=200,
            select="backtest",
        ).replace(**overrides)

    @classmethod
    def preset(cls, method: str, **overrides) -> LawSettings:
        if method not in METHODS:
            known = ", ".join(METHODS)
            raise FieldError("method", f"unknown method {method!r} (known: {known})")
        return getattr(cls, method)(**overrides)

    def replace(self, **overrides) -> LawSettings:
        names = {f.name for f in fields(self)}
        for k in overrides:
            if k not in names:
                raise FieldError("settings", f"unknown law setting {k!r}")
        out = replace(self, **overrides)
        out.validate()
        return out

    def validate(self) -> None:
        choices = {
            "step1_form": ("auto", "nd", "compute"),
            "step1_bounds": ("paper", "free"),
            "step1_starts": ("paper", "grid"),
            "step2_form": ("sigmoid", "log_sigmoid"),
            "step2_starts": ("paper", "grid"),
            "step2_floor": ("fitted", "chance", "auto"),
            "select": ("fixed", "backtest"),
            "schedule": ("cosine", "constant"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                value = getattr(self, name)
                raise FieldError(name, f"{value!r} (allowed: {', '.join(allowed)})")
        if self.feature not in ("auto", "bpb", "task_ce") and not self.feature.startswith("ce_"):
            raise FieldError(
                "feature", f"{self.feature!r} (allowed: auto, bpb, task_ce, ce_<set>)"
            )
        if not 0 <= self.final_fraction < 1:
            raise FieldError("final_fraction", f"must be in [0, 1), got {self.final_fraction}")
        if not 0 <= self.skip < 1:
            raise FieldError("skip", f"must be in [0, 1), got {self.skip}")
        for name in ("window", "final_window"):
            if getattr(self, name) < 1:
                raise FieldError(name, f"must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.n_bootstrap <= MAX_BOOTSTRAP:
            raise FieldError("n_bootstrap", f"must be in [0, {MAX_BOOTSTRAP}], got "
                             f"{self.n_bootstrap}")
        if not 0 <= self.seed < 2**32:
            raise FieldError("seed", f"must be in [0, 2**32), got {self.seed}")
        if not 0 < self.level < 1:
            raise FieldError("level", f"must be in (0, 1), got {self.level}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LawSettings:
        return cls().replace(**d)
