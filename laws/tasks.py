"""Facts about the ladder tasks that the laws need: keys, chance levels, the accuracy metric.

The paper predicts `acc_norm` (OLMo "len_norm", per character) for every task except BoolQ,
whose RC accuracy is plain `acc`.
"""

from __future__ import annotations

from .errors import InputError

TASKS = (
    "mmlu",
    "hellaswag",
    "arc_challenge",
    "arc_easy",
    "piqa",
    "csqa",
    "socialiqa",
    "openbookqa",
    "boolq",
    "winogrande",
)
# The eight tasks of the paper's headline table (BoolQ and Winogrande: variance analysis only).
PAPER_TASKS = TASKS[:8]

CHANCE = {
    "mmlu": 0.25,
    "hellaswag": 0.25,
    "arc_challenge": 0.25,
    "arc_easy": 0.25,
    "piqa": 0.5,
    "csqa": 0.2,
    "socialiqa": 1 / 3,
    "openbookqa": 0.25,
    "boolq": 0.5,
    "winogrande": 0.5,
}

# MMLU's score is the average of its subject groups weighted by their share of test questions.
MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}

LABELS = {
    "mmlu": "MMLU",
    "hellaswag": "HellaSwag",
    "arc_challenge": "ARC-Challenge",
    "arc_easy": "ARC-Easy",
    "piqa": "PIQA",
    "csqa": "CommonsenseQA",
    "socialiqa": "Social IQa",
    "openbookqa": "OpenBookQA",
    "boolq": "BoolQ",
    "winogrande": "Winogrande",
}


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
