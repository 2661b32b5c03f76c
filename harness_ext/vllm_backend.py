"""`ladder-vllm`: lm-eval's `vllm` model with loglikelihood scored on vLLM's prefix cache.

lm-eval's vllm model asks for `prompt_logprobs`, and vLLM then skips reading its prefix cache
for the request (`SamplingParams.skip_reading_prefix_cache` defaults to True with prompt
logprobs, because cached positions produce no logits). So every request prefills its whole
prompt, the 5-shot block included, and computes logits at every position. Here each distinct
(context, continuation) is sent once, sorted so that requests sharing a prefix are adjacent,
with the prefix cache read explicitly: vLLM then computes only the blocks after the cached
prefix, and the logits there, which include every position that predicts a continuation token.
vLLM reports how many prompt tokens came from the cache; a request whose cached part reached
into its continuation (so that position has no log-prob) is sent again without the cache.

Imported by `taskladder.harness_ext.backend` only where vllm is installed.
"""

from __future__ import annotations

import logging

from lm_eval.api.registry import register_model
from lm_eval.models.vllm_causallms import VLLM
from vllm import SamplingParams

from taskladder.harness_ext.requests import Key, Request, in_order, summed, windows

log = logging.getLogger(__name__)


@register_model("ladder-vllm")
class LadderVLLM(VLLM):
    """VLLM whose `_loglikelihood_tokens` reuses cached prefixes (same numbers, less prefill)."""

    def _loglikelihood_tokens(
        self, requests: list[Request], disable_tqdm: bool = False
    ) -> list[tuple[float, bool]]:
        window = self.max_length - 1  # vLLM needs room for one generated token
        fits = [len(c) + len(t) <= window for _, c, t in requests]
        # over-long: the context cut from the left, as lm-eval's vllm path does, and a
        # continuation longer than the window in pieces (that path then sums only part of it)
        pieces = [windows(c, t, window - 1) for (_, c, t), ok in zip(requests, fits, strict=True)
                  if not ok]
        keys = sorted({(tuple(c), tuple(t)) for (_, c, t), ok in zip(requests, fits, strict=True)
                       if ok} | {w for ws in pieces for w in ws})
        scored = self._score(keys, read_cache=True)
        redo = [k for k in keys if scored[k] is None]
        if redo:
            log.info("%d of %d requests re-sent without the prefix cache", len(redo), len(keys))
            scored.update(self._score(redo, read_cache=False))
        long_answers = [summed([scored[w] for w in ws]) for ws in pieces]
        return in_order(requests, fits, scored, long_answers, self.cache_hook)

    def _score(self, keys: list[Key], read_cache: bool) -> dict[Key, tuple[float, bool] | None]:
        params = SamplingParams(temperature=0, max_tokens=1, prompt_logprobs=0,
                                detokenize=False, skip_reading_prefix_cache=not read_cache)
        prompts = [{"prompt_token_ids": list(c + t)} for c, t in keys]
        outputs = self.model.generate(prompts, sampling_params=params, use_tqdm=False)
        out: dict[Key, tuple[float, bool] | None] = {}
        for (ctx, cont), o in zip(keys, outputs, strict=True):
            first_row = len(ctx) - 1  # prompt row i predicts token i + 1
            if read_cache and (o.num_cached_tokens or 0) > first_row:
                out[(ctx, cont)] = None
                continue
            rows = o.prompt_logprobs[len(ctx):]  # entry i + 1 holds row i's log-prob
            picked = [row[tok] for row, tok in zip(rows, cont, strict=True)]
            out[(ctx, cont)] = (sum(p.logprob for p in picked), all(p.rank == 1 for p in picked))
        return out
