"""Which accuracy the laws predict for a task, its chance level, and which tasks to fit.

The paper predicts `acc_norm` (OLMo "len_norm", per character) for every task except BoolQ,
whose RC accuracy is plain `acc`; a ladder without `acc_norm` for a task gives `acc`.
Chance comes from the given levels (field ``chance``), else from the ladder (a ``chance`` row
a reader found, e.g. an lm-eval task's fixed choice list), else from the facts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

from taskladder.common.errors import FieldError
from taskladder.common.facts import CHANCE, PAPER_TASKS, TASKS

from .observations import Observations

_TASK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")


def accuracy_metric(task: str, obs: Observations | None = None) -> str:
    """The RC accuracy the laws predict for a task (paper: len_norm; BoolQ: acc), or `acc`
    where the ladder has no `acc_norm` for it (another lab's release)."""
    if task == "boolq":
        return "acc"
    if obs is not None:
        have = set(obs.metric[obs.mask(task=task)].tolist())
        if "acc_norm" not in have and "acc" in have:
            return "acc"
    return "acc_norm"


def chance_level(
    task: str, obs: Observations | None = None, given: dict[str, float] | None = None
) -> float:
    """The accuracy of guessing; unknown chance is an error naming the field ``chance``."""
    if given and task in given:
        return float(given[task])
    if obs is not None:
        rows = obs.where(task=task, metric="chance")
        if len(rows):
            return float(rows.value[0])
    if task in CHANCE:
        return CHANCE[task]
    raise FieldError("chance", f"the chance level of task {task!r} is unknown; give it as {task}=P")


def chance_levels(given: Mapping[str, float | str] | None) -> dict[str, float]:
    """{task: P} with 0 <= P < 1, from numbers (or their text); errors name ``chance``."""
    out = {}
    for task, raw in (given or {}).items():
        try:
            p = float(raw)
        except (TypeError, ValueError):
            raise FieldError("chance", f"{task}={raw!r} is not a number") from None
        if not 0 <= p < 1:
            raise FieldError("chance", f"{task}={raw!r} must be in [0, 1)")
        out[str(task)] = p
    return out


def ladder_tasks(obs: Observations) -> list[str]:
    """Every task with an accuracy in the ladder: the facts' tasks in their order, then the
    others by name."""
    have = set(obs.where(metric=["acc", "acc_norm"]).unique("task")) - {"lm"}
    return [t for t in TASKS if t in have] + sorted(have - set(TASKS))


def select_tasks(names: Sequence[str] | None, obs: Observations | None = None) -> list[str]:
    """Task keys from a list: ``paper`` = the paper's eight, ``all`` = every task with an
    accuracy in the ladder `obs` (without a ladder: the facts' ten). None (nothing asked) =
    the paper's tasks with an accuracy in the ladder `obs`, else every task that has one: a user
    who brings a ladder without MMLU did not ask for MMLU (a ladder without any accuracy: its
    tasks, which the fit then names as lacking one; without a ladder, or with no task at all:
    the paper's eight, which the fit then names as missing). Any other key (an lm-eval
    task name, a table's task column) is accepted; the ladder is checked for it when the laws
    are fitted. Errors name the field ``tasks``."""
    if names is None and obs is not None:
        have = ladder_tasks(obs)
        present = [t for t in obs.unique("task") if t != "lm"]
        return [t for t in PAPER_TASKS if t in have] or have or present or list(PAPER_TASKS)
    items = list(PAPER_TASKS) if names is None else [t.strip() for t in names if t.strip()]
    if items == ["paper"]:
        return list(PAPER_TASKS)
    if items == ["all"]:
        found = list(TASKS) if obs is None else ladder_tasks(obs)
        if not found:
            raise FieldError("tasks", "all: the ladder has no task with an accuracy")
        return found
    if not items:
        raise FieldError("tasks", "no task given")
    for t in items:
        if not _TASK_RE.match(t) or t in ("lm", "all", "paper"):
            raise FieldError("tasks", f"{t!r} is not a task key")
    return list(dict.fromkeys(items))


@dataclass(frozen=True)
class TaskRows:
    """One task resolved on one ladder, once: its accuracy metric, its chance level and the
    rows a fit reads (the task's own and the LM losses, possible features). The fitter, the
    backtests, the bootstrap and the plots pass it down instead of the whole table, so the
    metric is derived once and the table is not queried again at every step."""

    task: str
    acc_metric: str
    chance: float
    obs: Observations

    @classmethod
    def of(
        cls, obs: Observations, task: str, chance: dict[str, float] | None = None
    ) -> TaskRows:
        rows = obs.where(task=[task, "lm"])
        return cls(task, accuracy_metric(task, rows), chance_level(task, rows, chance), rows)

    @classmethod
    def of_fit(cls, obs: Observations, fit) -> TaskRows:
        """The rows of a fitted task (its metric and chance as the fit recorded them)."""
        return cls(fit.task, fit.acc_metric, fit.chance, obs.where(task=[fit.task, "lm"]))

    def runs(self, names: Iterable[str]) -> TaskRows:
        """The same task on some of the ladder's runs (a backtest's training runs)."""
        return replace(self, obs=self.obs.where(run=list(names)))
