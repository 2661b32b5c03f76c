"""`!function` hooks of the ladder_* YAML; the logic lives in taskladder.harness_ext."""

from taskladder.harness_ext.metrics import (
    mmlu_weighted_mean,
    process_results,
    process_results_grouped,
)
from taskladder.harness_ext.olmes import load_dataset

__all__ = ["load_dataset", "mmlu_weighted_mean", "process_results", "process_results_grouped"]
