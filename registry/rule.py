"""What the drift gate checks: the measure, its tolerance and the shift a re-fit may make.

Two measures: `acc` compares accuracies in points (tolerance `5` = 5 points); `loss` compares
the task loss the law predicts (its step-1 feature, e.g. bits per byte) by relative error
(tolerance `5%`). Either may use `interval`: the actual value must lie inside the prediction's
interval. A shift (how far a re-fit moved a registered prediction) is measured the same way.
Standard library only, so a spec can be validated before anything heavy is imported.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from taskladder.common.errors import InputError

METRICS = ("acc", "loss")
DEFAULTS = {"acc": (5.0, 2.0), "loss": (5.0, 2.0)}  # (tolerance, max shift): points or percent
UNITS = {"acc": "points", "loss": "%"}
MAX_AMOUNT = 100.0  # points of accuracy, or percent of the loss: more would pass anything
DEFAULT = "default"  # max_shift: the metric's default (None turns the check off)


@dataclass(frozen=True)
class GateRule:
    """A validated gate rule; tolerance and max_shift are points (acc) or percent (loss)."""

    metric: str = "acc"
    tolerance: float | str = DEFAULTS["acc"][0]  # a number, or "interval"
    max_shift: float | None = DEFAULTS["acc"][1]  # None: moved predictions are not checked
    strict: bool = False  # an untrusted row (an unpredictable task) fails the gate

    @classmethod
    def parse(cls, metric: str | None = None, tolerance=None, max_shift=DEFAULT,
              strict: bool = False, *, prefix: str = "--") -> GateRule:
        """From CLI or spec values; `prefix` ("--" or "gate.") names the field in errors."""
        metric = "acc" if metric is None else metric
        if metric not in METRICS:
            raise InputError(f"{_field(prefix, 'metric')} {metric!r}: expected acc or loss")
        tol_default, shift_default = DEFAULTS[metric]
        tol = tol_default if tolerance is None else _amount(tolerance, metric, prefix, "tolerance",
                                                            interval=True)
        if max_shift == DEFAULT:
            shift = shift_default
        else:
            shift = None if max_shift is None else _amount(max_shift, metric, prefix, "max_shift")
        return cls(metric, tol, shift, bool(strict))

    def describe(self) -> str:
        unit = UNITS[self.metric]
        tol = "prediction interval" if self.tolerance == "interval" else _fmt(self.tolerance, unit)
        shift = "" if self.max_shift is None else f", max shift {_fmt(self.max_shift, unit)}"
        return f"{self.metric} {tol}{shift}{', strict' if self.strict else ''}"

    def to_dict(self) -> dict:
        return asdict(self)


def _fmt(value: float, unit: str) -> str:
    return f"{value:g}%" if unit == "%" else f"{value:g} points"


def _field(prefix: str, name: str) -> str:
    return prefix + (name.replace("_", "-") if prefix == "--" else name)


def _amount(value, metric: str, prefix: str, name: str, interval: bool = False) -> float | str:
    """Points for acc (a number), percent for loss ("5%"); "interval" where allowed."""
    where = f"{_field(prefix, name)} {value!r}"
    text = str(value).strip().lower() if isinstance(value, str | int | float) else None
    if text is None or isinstance(value, bool):
        raise InputError(f"{where}: expected a number")
    if interval and text == "interval":
        return "interval"
    relative = text.endswith("%")
    if metric == "acc" and relative:
        raise InputError(f"{where}: a relative tolerance is for the loss metric; give accuracy "
                         "points (e.g. 5)" + (" or 'interval'" if interval else ""))
    if metric == "loss" and not relative:
        raise InputError(f"{where}: the loss metric takes a relative amount (e.g. 5%)"
                         + (" or 'interval'" if interval else ""))
    try:
        number = float(text.removesuffix("%"))
    except ValueError:
        number = math.nan
    if not (math.isfinite(number) and 0 < number <= MAX_AMOUNT):
        unit = "percent" if relative else "points"
        raise InputError(f"{where}: expected {unit} in (0, {MAX_AMOUNT:g}]"
                         + (" or 'interval'" if interval else ""))
    return number
