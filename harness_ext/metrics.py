"""Per-question ranked-classification metrics, as OLMo's `ICLMetric` defines them.

With ll(c) the summed log-likelihood (nats) of option c, leading space token included:
- `acc`: argmax ll == gold.
- `acc_norm`: argmax ll / characters (leading space excluded; the paper's "len_norm").
- `acc_bytes`: argmax ll / UTF-8 bytes (leading space excluded).
- `bpb`: -ll(gold) / bytes(gold without leading space) * log2(e)  (the task loss).
- `ce`: -ll(gold) / characters(gold without leading space)  (nats per character).
- `task_ce`: -log softmax over the options' scores at gold, the scores being those OLMES ranks
  by (per-character ll for acc_per_char tasks, raw ll otherwise); positive.
The later OLMES standard counts the leading space in every length: `*_olmes` variants.
Lengths drop the first character as OLMo does (it is the leading space in all OLMES requests).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from taskladder.common.facts import mmlu_mean

LOG2_E = 1.0 / math.log(2.0)


def _lengths(continuations: Sequence[str], olmes: bool) -> tuple[np.ndarray, np.ndarray]:
    texts = [c if olmes else c[1:] for c in continuations]
    chars = np.array([max(len(t), 1) for t in texts], dtype=float)
    nbytes = np.array([max(len(t.encode("utf-8")), 1) for t in texts], dtype=float)
    return chars, nbytes


def _log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return shifted - math.log(np.exp(shifted).sum())


def question_metrics(
    lls: Sequence[float], continuations: Sequence[str], gold: int, score_norm: str
) -> dict[str, float]:
    """All metrics of one question from its options' log-likelihoods."""
    ll = np.asarray(lls, dtype=float)
    out = {"acc": float(np.argmax(ll) == gold)}
    for suffix, olmes in (("", False), ("_olmes", True)):
        chars, nbytes = _lengths(continuations, olmes)
        per_char = ll / chars
        scores = per_char if score_norm == "per_char" else ll
        out[f"acc_norm{suffix}"] = float(np.argmax(per_char) == gold)
        out[f"acc_bytes{suffix}"] = float(np.argmax(ll / nbytes) == gold)
        out[f"bpb{suffix}"] = float(-ll[gold] / nbytes[gold] * LOG2_E)
        out[f"ce{suffix}"] = float(-ll[gold] / chars[gold])
        out[f"task_ce{suffix}"] = float(-_log_softmax(scores)[gold])
    return out


def process_results(doc: dict[str, Any], results: Sequence[tuple[float, bool]]) -> dict:
    """lm-eval hook: one (loglikelihood, is_greedy) per option -> this question's metrics."""
    lls = [r[0] for r in results]
    return question_metrics(lls, doc["continuations"], int(doc["gold"]), doc["score_norm"])


def process_results_grouped(doc: dict[str, Any], results: Sequence[tuple[float, bool]]) -> dict:
    """Like `process_results`, each value tagged with the question's group (for MMLU)."""
    return {k: (doc["group"], v) for k, v in process_results(doc, results).items()}


def mmlu_weighted_mean(items: Sequence[tuple[str, float]]) -> float:
    """Mean per MMLU group, then MMLU's weighted mean of the groups present."""
    by_group: dict[str, list[float]] = {}
    for group, value in items:
        by_group.setdefault(group, []).append(value)
    return mmlu_mean({g: float(np.mean(v)) for g, v in by_group.items()})
