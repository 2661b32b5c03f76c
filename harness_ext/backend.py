"""`ladder-hf`: lm-eval's `hf` model with loglikelihood scored by shared-prefix reuse.

Tokenisation, model loading and every other request type are lm-eval's `HFLM`; only
`_loglikelihood_tokens` changes (see `prefix_scoring`). Requests longer than the model window
go through lm-eval's own left-truncating path, with one warning that counts them.

lm-eval has no plugin discovery for models, so the name is registered when this module is
imported: `python -m taskladder.harness_ext ...` (lm-eval's CLI after that import),
`taskladder eval`, or `import taskladder.harness_ext.backend` before `lm_eval.simple_evaluate`.
"""

from __future__ import annotations

import logging
from importlib.util import find_spec

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM

from taskladder.harness_ext.prefix_scoring import PrefixScorer, Question

log = logging.getLogger(__name__)

if find_spec("vllm") is not None:
    import taskladder.harness_ext.vllm_backend  # noqa: F401  (registers ladder-vllm)

Request = tuple[tuple[str, str], list[int], list[int]]


@register_model("ladder-hf")
class LadderHFLM(HFLM):
    """HFLM that computes each shared prefix (5-shot block, question context) once."""

    def __init__(self, *args, token_budget: int = 4096, min_prefix: int = 32, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.truncated_requests = 0
        self._scorer = (
            PrefixScorer(self.model, int(token_budget), int(min_prefix))
            if self.backend == "causal" and PrefixScorer.supports(self.model)
            else None
        )

    def _loglikelihood_tokens(
        self,
        requests: list[Request],
        disable_tqdm: bool = False,
        override_bs: int | None = None,
    ) -> list[tuple[float, bool]]:
        if self._scorer is None:
            return super()._loglikelihood_tokens(requests, disable_tqdm, override_bs)
        fits = [len(c) + len(t) - 1 <= self.max_length for _, c, t in requests]
        long = [r for r, ok in zip(requests, fits, strict=True) if not ok]
        if long:
            self.truncated_requests += len(long)
            log.warning(
                "%d of %d requests exceed the model window of %d tokens; their contexts are "
                "truncated from the left",
                len(long),
                len(requests),
                self.max_length,
            )
        questions: dict[tuple[int, ...], Question] = {}
        for (_, ctx, cont), ok in zip(requests, fits, strict=True):
            if ok:
                q = questions.setdefault(tuple(ctx), Question(tuple(ctx)))
                if tuple(cont) not in q.options:
                    q.options.append(tuple(cont))
        scored = self._scorer.score(list(questions.values()))
        long_results = iter(
            super()._loglikelihood_tokens(long, disable_tqdm, override_bs) if long else []
        )
        results = []
        for (pair, ctx, cont), ok in zip(requests, fits, strict=True):
            answer = scored[(tuple(ctx), tuple(cont))] if ok else next(long_results)
            self.cache_hook.add_partial("loglikelihood", pair, answer)
            results.append(answer)
        return results
