"""`ladder-hf`: lm-eval's `hf` model with loglikelihood scored by shared-prefix reuse.

Tokenisation, model loading and every other request type are lm-eval's `HFLM`; only
`_loglikelihood_tokens` changes (see `prefix_scoring`). Requests longer than the model window
are scored as lm-eval's hf path would (context cut from the left), a continuation longer than
the window in rolling windows where hf asserts, with one warning that counts them.

lm-eval has no plugin discovery for models, so the name is registered when this module is
imported: `python -m taskladder.harness_ext ...` (lm-eval's CLI after that import),
`taskladder eval`, or `import taskladder.harness_ext.backend` before `lm_eval.simple_evaluate`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
from importlib.util import find_spec

from lm_eval.api.registry import register_model
from lm_eval.models.huggingface import HFLM
from lm_eval.models.utils import has_bos_prefix

from taskladder.harness_ext.idle_cores import idle_cores
from taskladder.harness_ext.prefix_scoring import PrefixScorer, Question
from taskladder.harness_ext.requests import Request, in_order, summed, windows

log = logging.getLogger(__name__)


@contextlib.contextmanager
def cpu_threads(device: str, threads: int | None):
    """On a CPU, torch's intra-op threads while scoring: `threads`, else the cores that other
    processes leave idle now (`idle_cores`, rounded), at least one and at most torch's own
    count. The scorer's operations are small (rows of a few hundred tokens), and on more
    threads than free cores OpenMP's threads wait for each other at every one: on the shared
    2-core box at load 16, two threads took 3-4x the wall time of one."""
    import torch

    before = torch.get_num_threads()
    if device == "cpu":
        torch.set_num_threads(threads or max(1, min(round(idle_cores()), before)))
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


# (tokenizer fingerprint, add_bos_token, BOS id) -> {string: token ids}, see `_encode_all`
_ENCODED: tuple[tuple, dict[str, list[int]]] = ((), {})


def _fingerprint(tokenizer) -> str:
    """Identifies a tokenizer by its whole definition (vocabulary, merges, normalisation), so
    two checkpoints' copies of one tokenizer match and a retrained one does not."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else repr(tokenizer)
    return hashlib.sha256(text.encode()).hexdigest()


if find_spec("vllm") is not None:
    import taskladder.harness_ext.vllm_backend  # noqa: F401  (registers ladder-vllm)


@register_model("ladder-hf")
class LadderHFLM(HFLM):
    """HFLM that computes each shared prefix (5-shot block, question context) once."""

    def __init__(self, *args, token_budget: int | None = None, min_prefix: int = 32,
                 row_tokens: int = 128, threads: int | None = None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.truncated_requests = 0
        self.threads = int(threads) if threads else None
        self._scorer = (
            PrefixScorer(self.model, int(token_budget or self._token_budget()), int(min_prefix),
                         int(row_tokens))
            if self.backend == "causal" and PrefixScorer.supports(self.model)
            else None
        )

    def _token_budget(self) -> int:
        """Tokens per forward pass: 4096 on a CPU; on a GPU what a quarter of its free memory
        holds, counting per token the prefix keys/values each row copies (a 256-token prefix
        over 128-token rows), the layers' activations, and one float32 vocabulary row."""
        import torch

        if self.device.type != "cuda":
            return 4096
        cfg = self.model.config
        elem = torch.finfo(self.model.dtype).bits // 8
        d, layers = cfg.hidden_size, cfg.num_hidden_layers
        per_token = (layers * (2 * d * 3 + 4 * d + 3 * cfg.intermediate_size) * elem
                     + 2 * 4 * cfg.vocab_size)
        free, _ = torch.cuda.mem_get_info(self.device)
        return int(min(max(free // 4 // per_token, 4096), 1 << 20))

    def loglikelihood(self, requests, disable_tqdm: bool = False) -> list[tuple[float, bool]]:
        """lm-eval's tokenisation and splitting, with every distinct string encoded once, in
        one batch (the options of a question share their context: 4 requests, 5 strings)."""
        strings: set[str] = set()
        for context, continuation in (r.args for r in requests):
            n = len(context) - len(context.rstrip())
            if context and n:
                context, continuation = context[:-n], context[-n:] + continuation
            if context:
                strings.update((context, context + continuation))
        self._encoded = self._encode_all(sorted(strings))
        try:
            return super().loglikelihood(requests, disable_tqdm)
        finally:
            self._encoded = {}

    def _encode_all(self, strings: list[str]) -> dict[str, list[int]]:
        """What `tok_encode(s)` returns for each string (a string that starts with the BOS
        text gets no special tokens, the others the tokenizer's or `add_bos_token`'s).

        Kept for the next model with the same tokenizer (a ladder's checkpoints share one, and
        encoding a task's 5-shot strings cost ~1 s a checkpoint, a quarter of a micro model's
        scoring): one tokenizer's encodings at a time."""
        global _ENCODED
        key = (_fingerprint(self.tokenizer), self.add_bos_token, self.prefix_token_id)
        if _ENCODED[0] != key:
            _ENCODED = (key, {})
        known = _ENCODED[1]
        bos = self.tokenizer.decode(self.prefix_token_id)
        new = [s for s in strings if s not in known]
        starts_with_bos = [s for s in new if has_bos_prefix(s, bos)]
        rest = [s for s in new if not has_bos_prefix(s, bos)]
        kwargs = {} if self.add_bos_token is None else {"add_special_tokens": self.add_bos_token}
        for group, kw in ((starts_with_bos, {"add_special_tokens": False}), (rest, kwargs)):
            if group:
                known.update(zip(group, self.tokenizer(group, **kw)["input_ids"], strict=True))
        return {s: known[s] for s in strings}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None,
                   left_truncate_len: int | None = None, **kwargs) -> list[int]:
        cached = getattr(self, "_encoded", {}).get(string)
        if cached is not None and add_special_tokens is None and not left_truncate_len:
            return list(cached)
        return super().tok_encode(string, add_special_tokens, left_truncate_len, **kwargs)

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
        # over-long: the windows lm-eval's hf path scores (see `requests.windows`); the micro
        # ladder's 256-token models see every 5-shot request (~700 tokens) this way, scored
        # here with only the continuation's positions through the vocabulary head
        pieces = [windows(ctx, cont, self.max_length) for _, ctx, cont in long]
        with cpu_threads(self.device.type, self.threads):
            scored = self._scorer.score(list(questions.values()))
            alone = self._scorer.score_alone([Question(c, [t]) for ws in pieces for c, t in ws])
        long_answers = [summed([alone[w] for w in ws]) for ws in pieces]
        return in_order(requests, fits, scored, long_answers, self.cache_hook)

