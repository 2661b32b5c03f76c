"""Values a ladder table cannot hold, refused before any fit (a fit would succeed silently).

A loss is never negative; an accuracy (or chance level) lies in [0, 1], so a file of percents
read as fractions is caught; and each (run, step, task, metric) has one value: repeated rows,
equal or not, mean a file was concatenated twice or two sources disagree.
"""

from __future__ import annotations

from .observations import Observations

LOSS_METRICS = ("bpb", "ce", "task_ce")  # and ce_<set>, the LM losses of task "lm"
FRACTION_METRICS = ("acc", "acc_norm", "acc_bytes", "acc_mc", "chance")


def check_values(obs: Observations, where: str, line0: int | None = None) -> None:
    """InputError naming the first bad row; `line0`: the file line of row 0 (CSV tables: 2),
    None when rows do not map to lines (the row is then named by its key)."""
    from taskladder.common.errors import InputError

    runs, steps, tasks, metrics, values = (getattr(obs, c).tolist() for c in
                                           ("run", "step", "task", "metric", "value"))

    def at(i: int) -> str:
        key = f"run {runs[i]}, step {steps[i]}, {tasks[i]} {metrics[i]}"
        return f"line {i + line0} ({key})" if line0 is not None else key

    seen: dict[tuple, int] = {}
    duplicates = 0
    first_duplicate = None
    for i, (run, step, task, metric, value) in enumerate(zip(runs, steps, tasks, metrics,
                                                             values, strict=True)):
        loss = metric in LOSS_METRICS or metric.startswith("ce_")
        if loss and value < 0:
            raise InputError(f"{where}: {at(i)}: a loss must be >= 0, got {value:g}")
        if metric in FRACTION_METRICS and not 0.0 <= value <= 1.0:
            hint = " (percent read as a fraction?)" if 1.0 < value <= 100.0 else ""
            raise InputError(f"{where}: {at(i)}: {metric} must lie in [0, 1], got {value:g}"
                             f"{hint}")
        j = seen.setdefault((run, step, task, metric), i)
        if j != i:
            if values[j] != value:
                earlier = f"line {j + line0}" if line0 is not None else "an earlier row"
                raise InputError(f"{where}: {at(i)}: a second value {value:g} for the same "
                                 f"run, step, task and metric ({values[j]:g} at {earlier})")
            duplicates += 1
            first_duplicate = first_duplicate if first_duplicate is not None else i
    if duplicates:
        raise InputError(f"{where}: {duplicates} duplicate row(s), the first at "
                         f"{at(first_duplicate)}: remove the repeated rows")
