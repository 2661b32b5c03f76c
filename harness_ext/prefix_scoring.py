"""Score (context, continuation) token requests computing every shared prefix once.

All requests of an OLMES task start with the same 5-shot prefix, and the options of a question
share their whole context. So: group the distinct contexts into clusters with a long common
token prefix, run that prefix once and keep its key/value cache, then score a batch of
questions per forward pass, each packed as one row `[rest of context, option 1, option 2, ...]`
under a tree attention mask (an option sees the prefix, its context and itself, never another
option), with the log-softmax taken only at the positions that predict continuation tokens.
The numbers equal a full forward pass of each request up to float rounding.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

Tokens = tuple[int, ...]


@dataclass
class Question:
    """One distinct context and the distinct continuations scored after it."""

    context: Tokens
    options: list[Tokens] = field(default_factory=list)


@dataclass
class Cluster:
    """Questions whose contexts share their first `prefix_len` tokens."""

    prefix_len: int
    questions: list[Question]


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def cluster_contexts(questions: list[Question], min_prefix: int = 32) -> list[Cluster]:
    """Sort contexts and cut where the shared prefix drops (below `min_prefix` tokens, or below
    half of the cluster's prefix); every context keeps at least its last token outside."""
    clusters: list[Cluster] = []
    for q in sorted(questions, key=lambda q: q.context):
        if clusters:
            cur = clusters[-1]
            shared = min(_common_prefix(cur.questions[0].context, q.context), len(q.context) - 1)
            need = min_prefix if len(cur.questions) == 1 else max(min_prefix, cur.prefix_len // 2)
            if shared >= need:
                cur.prefix_len = min(cur.prefix_len, shared)
                cur.questions.append(q)
                continue
        clusters.append(Cluster(len(q.context) - 1, [q]))
    return clusters


@dataclass
class _Row:
    tokens: list[int]
    segment: list[int]  # 0 = context, j + 1 = option j
    position: list[int]
    targets: list[tuple[Tokens, list[int]]]  # (option tokens, row positions predicting them)


def _pack(question: Question, prefix_len: int) -> _Row:
    rest = list(question.context[prefix_len:])
    tokens, segment = rest[:], [0] * len(rest)
    position = list(range(prefix_len, prefix_len + len(rest)))
    targets = []
    for j, option in enumerate(question.options):
        start = len(tokens)
        body = list(option[:-1])
        tokens += body
        segment += [j + 1] * len(body)
        position += range(prefix_len + len(rest), prefix_len + len(rest) + len(body))
        targets.append((option, [len(rest) - 1, *range(start, start + len(body))]))
    return _Row(tokens, segment, position, targets)


class PrefixScorer:
    """Log-likelihoods of continuations from a Hugging Face causal LM, shared prefixes once."""

    def __init__(self, model, token_budget: int = 4096, min_prefix: int = 32) -> None:
        self.base = model.base_model
        self.head = model.get_output_embeddings()
        params = inspect.signature(self.base.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.token_budget = token_budget
        self.min_prefix = min_prefix
        self.device = next(model.parameters()).device

    @staticmethod
    def supports(model) -> bool:
        """Plain decoder heads only (a logit soft-cap or scale would be skipped here)."""
        cfg = model.config
        capped = any(getattr(cfg, k, None) for k in ("final_logit_softcapping", "logit_scale"))
        return model.get_output_embeddings() is not None and not capped

    @torch.inference_mode()
    def score(self, questions: list[Question]) -> dict[tuple[Tokens, Tokens], tuple[float, bool]]:
        """(context, continuation) -> (log-likelihood, continuation is the greedy decode)."""
        out: dict[tuple[Tokens, Tokens], tuple[float, bool]] = {}
        for cluster in cluster_contexts(questions, self.min_prefix):
            self._score_cluster(cluster, out)
        return out

    def _prefix_cache(self, tokens: Tokens) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        if not tokens:
            return None
        ids = torch.tensor([tokens], device=self.device)
        res = self.base(input_ids=ids, use_cache=True)
        cache = res.cache if hasattr(res, "cache") else res.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_cluster(self, cluster: Cluster, out: dict) -> None:
        from transformers import DynamicCache

        p = cluster.prefix_len
        kv = self._prefix_cache(cluster.questions[0].context[:p])
        rows = sorted(((_pack(q, p), q) for q in cluster.questions), key=lambda rq: len(rq[0].tokens))
        budget, start = self.token_budget, 0
        while start < len(rows):
            stop = start + 1
            while stop < len(rows) and (stop - start + 1) * len(rows[stop][0].tokens) <= budget:
                stop += 1
            batch = rows[start:stop]
            start = stop
            width = max(len(r.tokens) for r, _ in batch)
            n = len(batch)
            ids = torch.zeros(n, width, dtype=torch.long)
            seg = torch.full((n, width), -1, dtype=torch.long)
            pos = torch.full((n, width), p, dtype=torch.long)
            for i, (r, _) in enumerate(batch):
                ids[i, : len(r.tokens)] = torch.tensor(r.tokens)
                seg[i, : len(r.tokens)] = torch.tensor(r.segment)
                pos[i, : len(r.tokens)] = torch.tensor(r.position)
            idx = torch.arange(width)
            causal = idx[None, :] <= idx[:, None]
            same = (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
            block = causal & same & (seg[:, None, :] >= 0)
            block |= torch.eye(width, dtype=torch.bool)  # padding attends to itself: no NaN
            mask = torch.cat([torch.ones(n, width, p, dtype=torch.bool), block], dim=-1)
            kwargs = {"attention_mask": mask[:, None].to(self.device)}
            if kv is not None:
                kwargs[self.cache_kw] = DynamicCache(
                    [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]
                )
            hidden = self.base(
                input_ids=ids.to(self.device), position_ids=pos.to(self.device), **kwargs
            ).last_hidden_state
            self._read_out(batch, hidden, out)

    def _read_out(self, batch, hidden: torch.Tensor, out: dict) -> None:
        row_ix, col_ix, target_ix = [], [], []
        for i, (r, _) in enumerate(batch):
            for option, cols in r.targets:
                row_ix += [i] * len(cols)
                col_ix += cols
                target_ix += option
        logits = self.head(hidden[torch.tensor(row_ix), torch.tensor(col_ix)])
        logp = F.log_softmax(logits.float(), dim=-1)
        target = torch.tensor(target_ix, device=logp.device)
        picked = logp.gather(1, target[:, None])[:, 0].tolist()
        greedy = (logp.argmax(dim=-1) == target).tolist()
        k = 0
        for r, q in batch:
            for option, cols in r.targets:
                m = len(cols)
                out[(q.context, option)] = (float(sum(picked[k : k + m])), all(greedy[k : k + m]))
                k += m
