"""Which accuracy the laws predict for a task, its chance level, and parsing task lists.

The paper predicts `acc_norm` (OLMo "len_norm", per character) for every task except BoolQ,
whose RC accuracy is plain `acc`; a ladder without `acc_norm` for a task gives `acc`.
Chance comes from `--chance TASK=P`, else from the ladder (a ``chance`` row a reader found,
e.g. an lm-eval task's fixed choice list), else from the facts.
"""

from __future__ import annotations

import re

from taskladder.common.errors import InputError
from taskladder.common.facts import CHANCE, PAPER_TASKS, TASKS

from .observations import Observations

_TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def accuracy_metric(task: str, obs: Observations | None = None) -> str:
    """The RC accuracy the laws predict for a task (paper: len_norm; BoolQ: acc), or `acc`
    where the ladder has no `acc_norm` for it (another lab's release)."""
    if task == "boolq":
        return "acc"
    if obs is not None:
        have = set(obs.where(task=task).metric.tolist())
        if "acc_norm" not in have and "acc" in have:
            return "acc"
    return "acc_norm"


def chance_level(
    task: str, obs: Observations | None = None, given: dict[str, float] | None = None
) -> float:
    """The accuracy of guessing; unknown chance is an error naming the flag."""
    if given and task in given:
        return float(given[task])
    if obs is not None:
        rows = obs.where(task=task, metric="chance")
        if len(rows):
            return float(rows.value[0])
    if task in CHANCE:
        return CHANCE[task]
    raise InputError(
        f"--chance: the chance level of task {task!r} is unknown; give it as --chance {task}=P"
    )


def parse_chance(spec: str | dict | None, where: str = "--chance") -> dict[str, float]:
    """`TASK=P,...` (or a mapping) -> {task: P} with 0 <= P < 1."""

    def chance(task: str, raw) -> float:
        try:
            p = float(raw)
        except (TypeError, ValueError):
            raise InputError(f"{where}: {task}={raw!r} is not a number") from None
        if not 0 <= p < 1:
            raise InputError(f"{where}: {task}={raw!r} must be in [0, 1)")
        return p

    return parse_named(spec, where, chance)


def parse_named(spec: str | dict | None, where: str, value) -> dict[str, float]:
    """`NAME=VALUE,...` (or a mapping) -> {name: value(name, raw)} (--sizes, --chance)."""
    if not spec:
        return {}
    items = spec.items() if isinstance(spec, dict) else parse_pairs(str(spec), where)
    return {str(name): value(str(name), raw) for name, raw in items}


def _pair(item: str, where: str) -> tuple[str, str]:
    if "=" not in item:
        raise InputError(f"{where}: {item.strip()!r} is not NAME=VALUE")
    k, v = item.split("=", 1)
    if not k.strip():
        raise InputError(f"{where}: {item.strip()!r} has no name")
    return k.strip(), v.strip()


def parse_pairs(spec: str, where: str) -> list[tuple[str, str]]:
    """`NAME=VALUE,...` -> pairs (shared by --sizes and --chance)."""
    return [_pair(p, where) for p in spec.split(",") if p.strip()]


def parse_tasks(spec: str | list[str] | None, where: str = "--tasks") -> list[str]:
    """A comma-separated list (or list) of task keys; None = the paper's eight, "all" = the ten.
    Any other key (an lm-eval task name, a table's task column) is accepted; the ladder
    is checked for it when the laws are fitted."""
    if spec is None:
        return list(PAPER_TASKS)
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    items = [t.strip() for t in items if t.strip()]
    if items == ["all"]:
        return list(TASKS)
    if not items:
        raise InputError(f"{where}: no task given")
    for t in items:
        if not _TASK_RE.match(t) or t == "lm":
            raise InputError(f"{where}: {t!r} is not a task key")
    return list(dict.fromkeys(items))
