"""Values a ladder table cannot hold, refused before any fit (a fit would succeed silently).

A loss is never negative; an accuracy (or chance level) lies in [0, 1], so a file of percents
read as fractions is caught; and each (run, step, task, metric) has one value: repeated rows,
equal or not, mean a file was concatenated twice or two sources disagree.
"""

from __future__ import annotations

import numpy as np

from .observations import Observations

LOSS_METRICS = ("bpb", "ce", "task_ce")  # and ce_<set>, the LM losses of task "lm"
FRACTION_METRICS = ("acc", "acc_norm", "acc_bytes", "acc_mc", "chance")


def check_values(obs: Observations, where: str, line0: int | None = None) -> None:
    """InputError naming the first bad row; `line0`: the file line of row 0 (CSV tables: 2),
    None when rows do not map to lines (the row is then named by its key). Vectorised: a
    released ladder is 64k rows, read on every `predict`."""
    from taskladder.common.errors import InputError

    n = len(obs)
    if not n:
        return
    values = obs.value
    metric_index, metric = obs._codes("metric")
    names = list(metric_index)
    is_loss = np.array([m in LOSS_METRICS or m.startswith("ce_") for m in names])[metric]
    is_fraction = np.array([m in FRACTION_METRICS for m in names])[metric]
    negative_loss = is_loss & (values < 0)
    outside = is_fraction & ~((values >= 0.0) & (values <= 1.0))
    first = _first_of_key(obs)
    repeated = first != np.arange(n)
    conflict = repeated & (values[first] != values)

    def at(i: int) -> str:
        key = f"run {obs.run[i]}, step {obs.step[i]}, {obs.task[i]} {obs.metric[i]}"
        return f"line {i + line0} ({key})" if line0 is not None else key

    bad = np.flatnonzero(negative_loss | outside | conflict)
    if bad.size:
        i = int(bad[0])
        value, m = float(values[i]), str(obs.metric[i])
        if negative_loss[i]:
            raise InputError(f"{where}: {at(i)}: a loss must be >= 0, got {value:g}")
        if outside[i]:
            hint = " (percent read as a fraction?)" if 1.0 < value <= 100.0 else ""
            raise InputError(f"{where}: {at(i)}: {m} must lie in [0, 1], got {value:g}{hint}")
        j = int(first[i])
        earlier = f"line {j + line0}" if line0 is not None else "an earlier row"
        raise InputError(f"{where}: {at(i)}: a second value {value:g} for the same "
                         f"run, step, task and metric ({float(values[j]):g} at {earlier})")
    if repeated.any():
        raise InputError(f"{where}: {int(repeated.sum())} duplicate row(s), the first at "
                         f"{at(int(np.flatnonzero(repeated)[0]))}: remove the repeated rows")


def _first_of_key(obs: Observations) -> np.ndarray:
    """Per row, the index of the first row with its (run, step, task, metric)."""
    n = len(obs)
    keys = (obs._codes("run")[1], obs.step, obs._codes("task")[1], obs._codes("metric")[1])
    order = np.lexsort((np.arange(n), *keys[::-1]))  # by key, then row
    sk = [k[order] for k in keys]
    new = np.ones(n, dtype=bool)
    new[1:] = np.any([k[1:] != k[:-1] for k in sk], axis=0)
    start = np.maximum.accumulate(np.where(new, np.arange(n), 0))
    first = np.empty(n, dtype=np.int64)
    first[order] = order[start]
    return first
