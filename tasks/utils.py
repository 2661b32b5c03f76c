"""`!function` hooks of the ladder_* YAML; the logic lives in taskladder.harness_ext."""

from functools import partial

from taskladder.common.facts import MMLU_WEIGHTS
from taskladder.harness_ext.metrics import (
    process_results,
    process_results_grouped,
    weighted_group_mean,
)
from taskladder.harness_ext.olmes import load_dataset

mmlu_weighted_mean = partial(weighted_group_mean, weights=MMLU_WEIGHTS)

__all__ = ["load_dataset", "mmlu_weighted_mean", "process_results", "process_results_grouped"]
