"""The ladder-hf backend: same answers as lm-eval's hf backend, shared prefixes found,
over-long requests truncated like hf and counted in a warning, continuations longer than the
window scored in rolling windows."""

from __future__ import annotations

import logging
import random

import pytest

from taskladder.harness_ext.prefix_scoring import Question, cluster_contexts

TASKS = ["ladder_arc_challenge_rc", "ladder_winogrande_rc", "ladder_boolq_mc", "ladder_mmlu_rc"]


def test_clusters_follow_shared_prefixes():
    shots_a, shots_b = tuple(range(100)), tuple(range(500, 600))
    qs = [Question(shots_a + (1000 + i, 7)) for i in range(3)]
    qs += [Question(shots_b + (2000 + i,)) for i in range(2)]
    qs.append(Question((5, 6)))  # shares nothing
    clusters = cluster_contexts(qs, min_prefix=32)
    sizes = sorted((c.prefix_len, len(c.questions)) for c in clusters)
    assert sizes == [(1, 1), (100, 2), (100, 3)]
    # a context is never swallowed whole: its last token stays outside the prefix
    solo = cluster_contexts([Question(shots_a)])
    assert solo[0].prefix_len == len(shots_a) - 1


def _evaluate(model: str, model_dir, limit: int, tasks=TASKS):
    import lm_eval

    import taskladder.harness_ext.backend  # noqa: F401
    from taskladder.harness_ext.runner import task_manager

    return lm_eval.simple_evaluate(
        model=model,
        model_args={"pretrained": str(model_dir), "device": "cpu"},
        tasks=tasks,
        limit=limit,
        batch_size=8,
        log_samples=True,
        task_manager=task_manager(),
    )


def _same_answers(fast: dict, ref: dict, tasks: list[str]) -> None:
    for task in tasks:
        got, want = fast["results"][task], ref["results"][task]
        for key, value in want.items():
            if key.startswith(("acc", "bpb", "ce", "task_ce")) and "stderr" not in key:
                assert got[key] == pytest.approx(value, abs=1e-5), (task, key)
        pairs = zip(fast["samples"][task], ref["samples"][task], strict=True)
        for a, b in pairs:
            assert a["doc_id"] == b["doc_id"]
            # resps: one [(loglikelihood, is_greedy)] per option
            for (ll_a, greedy_a), (ll_b, greedy_b) in zip(
                (r[0] for r in a["resps"]), (r[0] for r in b["resps"]), strict=True
            ):
                assert float(ll_a) == pytest.approx(float(ll_b), abs=1e-4)
                assert greedy_a == greedy_b


@pytest.mark.e2e
def test_ladder_hf_equals_hf(tiny_model_dir):
    fast, ref = _evaluate("ladder-hf", tiny_model_dir, 6), _evaluate("hf", tiny_model_dir, 6)
    _same_answers(fast, ref, TASKS)


@pytest.mark.e2e
def test_window_overflow_is_counted_and_scored_like_hf(tmp_path, caplog):
    """A 256-token model (the micro ladder's window) sees every 5-shot request cut from the
    left: ladder-hf scores those windows itself and must give hf's answers."""
    from tiny_model import make_tiny_olmo2

    short = make_tiny_olmo2(tmp_path / "short", max_len=256)
    tasks = ["ladder_arc_easy_rc", "ladder_hellaswag_rc"]
    with caplog.at_level(logging.WARNING, logger="taskladder.harness_ext.backend"):
        fast = _evaluate("ladder-hf", short, 3, tasks=tasks)
    assert "24 of 24 requests exceed the model window of 256 tokens" in caplog.text
    assert fast["results"]["ladder_arc_easy_rc"]["bpb,none"] > 0
    _same_answers(fast, _evaluate("hf", short, 3, tasks=tasks), tasks)


def _direct_windows(model, ctx: list[int], cont: list[int], window: int) -> tuple[float, bool]:
    """Plain forward passes: the continuation cut into disjoint chunks of `window` tokens from
    its end, each predicted from the `window` tokens before its last one (the first chunk's
    window starting no earlier than the sequence)."""
    import torch

    seq, ll, greedy = ctx + cont, 0.0, True
    ends = list(range(len(seq), len(ctx), -window))
    for end in ends:
        first = max(len(ctx), end - window)
        inp = torch.tensor([seq[max(0, end - window - 1): end - 1]])
        with torch.no_grad():
            logp = torch.log_softmax(model(inp).logits[0].float(), dim=-1)[-(end - first):]
        target = torch.tensor(seq[first:end])
        ll += float(logp.gather(1, target[:, None]).sum())
        greedy &= bool((logp.argmax(-1) == target).all())
    return ll, greedy


def test_continuation_longer_than_window_scored_in_rolling_windows(tmp_path):
    """A continuation longer than the model window (PIQA's longest at vocab 512 and window 256)
    made hf assert: ladder-hf scores it in rolling windows, each token after at least one and
    up to `max_length` preceding tokens, and agrees with plain forward passes; requests that fit,
    or whose context alone is cut, are scored as before."""
    from tiny_model import make_tiny_olmo2

    from taskladder.harness_ext.backend import LadderHFLM

    lm = LadderHFLM(pretrained=str(make_tiny_olmo2(tmp_path / "m", max_len=32)), device="cpu")
    assert lm.max_length == 32
    rng = random.Random(0)

    def toks(n: int) -> list[int]:
        return [rng.randrange(3, 500) for _ in range(n)]

    cases = [(toks(10), toks(80)), (toks(3), toks(33)), (toks(40), toks(32)), (toks(50), toks(20)),
             (toks(5), toks(5))]
    got = lm._loglikelihood_tokens([(("", ""), ctx, cont) for ctx, cont in cases])
    assert lm.truncated_requests == 4
    for (ctx, cont), (ll, greedy) in zip(cases, got, strict=True):
        want_ll, want_greedy = _direct_windows(lm.model, ctx, cont, lm.max_length)
        assert ll == pytest.approx(want_ll, rel=1e-5, abs=1e-4), (len(ctx), len(cont))
        assert greedy == want_greedy
    # where the whole request fits, the direct computation is one plain forward pass
    ctx, cont = cases[-1]
    assert got[-1][0] == pytest.approx(_direct_windows(lm.model, ctx, cont, 10**6)[0], abs=1e-4)
