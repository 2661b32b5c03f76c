"""The 7B trajectory the trajectory tests watch, and the fault they inject into it."""

from __future__ import annotations

import numpy as np

from taskladder.laws.observations import Observations

PLANNED = 5e12  # peteish7_eval_full's planned tokens: its cosine schedule was set for 5T


def faulty(target: Observations, start: float = 0.3, worse: float = 1.03) -> Observations:
    """The task loss of every checkpoint from `start` of the planned total on, `worse` x."""
    hit = (target.metric == "bpb") & (target.D >= start * PLANNED)
    cols = {c: getattr(target, c) for c in ("run", "size", "N", "D", "step", "flops", "task",
                                             "metric")}
    return Observations.from_columns(dict(cols, value=np.where(hit, target.value * worse,
                                                               target.value)))
