"""Facts about models and tasks, in one place: sizes, N, FLOPs per token, targets, chance, MMLU.

Sources: the OLMo-ladder release (allenai/OLMo-ladder) and Bhagia et al. (2024), as listed in
../shared/README.md and METHOD.md.
"""

from __future__ import annotations

from collections.abc import Mapping

# Non-embedding N and OLMo's logged FLOPs per token (None: not logged; 6N is used) per size.
OLMO_SIZES: dict[str, tuple[int, int | None]] = {
    "190M": (190_354_176, 1_903_391_232),
    "370M": (371_262_464, 3_443_922_944),
    "760M": (758_220_288, 6_373_843_968),
    "1B": (1_279_395_840, 10_109_071_360),
    "3B": (3_169_537_280, None),
    "7B": (6_887_575_552, 49_412_071_424),
    "13B": (13_202_396_160, None),
}

# Named targets of the paper: (N, D).
TARGETS: dict[str, tuple[int, int]] = {
    "7B-4T": (6_887_575_552, 3_945_065_873_408),
    "13B-5T": (13_202_396_160, 5_000_088_518_656),
}

# The runs the paper fits on (not the -rerun or 0.5xC runs, not the 7B files).
PAPER_LADDER = ("*-1xC", "*-2xC", "*-5xC", "*-10xC")
PAPER_TARGET_RUN = "peteish7_eval_anneal"

TASKS = (
    "mmlu", "hellaswag", "arc_challenge", "arc_easy", "piqa",
    "csqa", "socialiqa", "openbookqa", "boolq", "winogrande",
)
# The eight tasks of the paper's headline table (BoolQ and Winogrande: variance analysis only).
PAPER_TASKS = TASKS[:8]

# The split each task is scored on (METHOD.md section 3): test where a task has one, else val.
SPLITS: dict[str, str] = {
    "mmlu": "test", "hellaswag": "val", "arc_challenge": "test", "arc_easy": "test",
    "piqa": "val", "csqa": "val", "socialiqa": "val", "openbookqa": "test", "boolq": "val",
    "winogrande": "val",
}

CHANCE: dict[str, float] = {
    "mmlu": 0.25, "hellaswag": 0.25, "arc_challenge": 0.25, "arc_easy": 0.25, "piqa": 0.5,
    "csqa": 0.2, "socialiqa": 1 / 3, "openbookqa": 0.25, "boolq": 0.5, "winogrande": 0.5,
}

# MMLU's score is the average of its subject groups weighted by their share of test questions.
MMLU_WEIGHTS = {"stem": 0.215, "humanities": 0.335, "social_sciences": 0.219, "other": 0.231}


def mmlu_mean(groups: Mapping[str, float]) -> float:
    """MMLU's score from its groups' scores: the weighted mean of the groups present (weights
    renormalised over them, so a subset of groups still gives a mean)."""
    total = sum(MMLU_WEIGHTS[g] for g in groups)
    return sum(MMLU_WEIGHTS[g] * v for g, v in groups.items()) / total

LABELS = {
    "mmlu": "MMLU", "hellaswag": "HellaSwag", "arc_challenge": "ARC-Challenge",
    "arc_easy": "ARC-Easy", "piqa": "PIQA", "csqa": "CommonsenseQA", "socialiqa": "Social IQa",
    "openbookqa": "OpenBookQA", "boolq": "BoolQ", "winogrande": "Winogrande",
}

# Chinchilla: 1xC = 20 training tokens per non-embedding parameter.
CHINCHILLA_TOKENS_PER_PARAM = 20


def train_flops(N, D):
    """Training compute by the 6ND rule: 6 FLOPs per parameter per token (numbers or arrays)."""
    return 6.0 * N * D
