"""The token requests lm-eval hands a model's `_loglikelihood_tokens`, and their answers put
back in request order (shared by the `ladder-hf` and `ladder-vllm` backends)."""

from __future__ import annotations

from collections.abc import Sequence

Request = tuple[tuple[str, str], list[int], list[int]]  # ((context, continuation), ids, ids)
Key = tuple[tuple[int, ...], tuple[int, ...]]
Answer = tuple[float, bool]  # (log-likelihood, continuation is the greedy decode)


def windows(ctx: Sequence[int], cont: Sequence[int], length: int) -> list[Key]:
    """An over-long request as (context, continuation) pieces of at most `length + 1` tokens:
    the context cut from the left, as lm-eval's hf path scores it, while the continuation
    fits; a longer continuation in disjoint pieces from its end, each predicting up to
    `length` tokens after the ones that precede them (lm-eval's rolling log-likelihood)."""
    seq, end, out = [*ctx, *cont], len(ctx) + len(cont), []
    while end > len(ctx):
        start = max(len(ctx), end - length)
        out.append((tuple(seq[max(0, end - length - 1): start]), tuple(seq[start:end])))
        end = start
    return out[::-1]


def summed(parts: Sequence[Answer]) -> Answer:
    """One continuation scored in pieces: log-likelihoods add, greedy only if every piece is."""
    return sum(ll for ll, _ in parts), all(greedy for _, greedy in parts)


def in_order(requests: Sequence[Request], fits: Sequence[bool], scored: dict[Key, Answer],
             long_answers: Sequence[Answer], cache_hook) -> list[Answer]:
    """A fitting request's answer from `scored` (by its tokens), an over-long one's from
    `long_answers` in turn; each also handed to lm-eval's cache hook."""
    long = iter(long_answers)
    results = []
    for (pair, ctx, cont), ok in zip(requests, fits, strict=True):
        answer = scored[(tuple(ctx), tuple(cont))] if ok else next(long)
        cache_hook.add_partial("loglikelihood", pair, answer)
        results.append(answer)
    return results
