"""Which accuracy the laws predict for a task, and parsing task lists (facts: common.facts).

The paper predicts `acc_norm` (OLMo "len_norm", per character) for every task except BoolQ,
whose RC accuracy is plain `acc`.
"""

from __future__ import annotations

from taskladder.common.errors import InputError
from taskladder.common.facts import PAPER_TASKS, TASKS


def accuracy_metric(task: str) -> str:
    """The RC accuracy the laws predict for a task (paper: len_norm; BoolQ: acc)."""
    return "acc" if task == "boolq" else "acc_norm"


def parse_tasks(spec: str | list[str] | None, where: str = "--tasks") -> list[str]:
    """A comma-separated list (or list) of task keys; None or "all" = the paper's eight."""
    if spec is None:
        return list(PAPER_TASKS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [t.strip() for t in items if t.strip()]
    if items == ["all"]:
        return list(TASKS)
    if not items:
        raise InputError(f"{where}: no task given")
    for t in items:
        if t not in TASKS:
            raise InputError(f"{where}: unknown task {t!r} (known: {', '.join(TASKS)})")
    return list(dict.fromkeys(items))
