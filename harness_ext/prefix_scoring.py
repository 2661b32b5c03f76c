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

Tokens = tuple[int, ...]
READOUT_ROWS = 512  # positions whose vocabulary logits are held at once


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
    """Questions packed one after another in one sequence after the shared prefix."""

    tokens: list[int] = field(default_factory=list)
    question: list[int] = field(default_factory=list)  # index of the question in this row
    segment: list[int] = field(default_factory=list)  # 0 = its context, j + 1 = its option j
    position: list[int] = field(default_factory=list)
    # (context, option tokens, row positions predicting them)
    targets: list[tuple[Tokens, Tokens, list[int]]] = field(default_factory=list)

    def add(self, question: Question, prefix_len: int) -> None:
        qid = self.question[-1] + 1 if self.question else 0
        rest = list(question.context[prefix_len:])
        last_ctx = len(self.tokens) + len(rest) - 1  # predicts each option's first token
        self._extend(rest, qid, 0, prefix_len)
        for j, option in enumerate(question.options):
            start = len(self.tokens)
            self._extend(list(option[:-1]), qid, j + 1, prefix_len + len(rest))
            self.targets.append((question.context, option,
                                 [last_ctx, *range(start, len(self.tokens))]))

    def _extend(self, tokens: list[int], qid: int, segment: int, first_position: int) -> None:
        self.tokens += tokens
        self.question += [qid] * len(tokens)
        self.segment += [segment] * len(tokens)
        self.position += range(first_position, first_position + len(tokens))


def pack_rows(questions: list[Question], prefix_len: int, row_tokens: int) -> list[_Row]:
    """Questions (shortest first) packed into rows of about `row_tokens` tokens: a longer row
    copies the cached prefix into fewer rows, a shorter one attends over fewer keys."""
    rows: list[_Row] = []
    for q in sorted(questions, key=lambda q: len(q.context) + sum(map(len, q.options))):
        size = len(q.context) - prefix_len + sum(len(o) - 1 for o in q.options)
        if not rows or rows[-1].tokens and len(rows[-1].tokens) + size > row_tokens:
            rows.append(_Row())
        rows[-1].add(q, prefix_len)
    return rows


class PrefixScorer:
    """Log-likelihoods of continuations from a Hugging Face causal LM, shared prefixes once."""

    def __init__(self, model, token_budget: int = 4096, min_prefix: int = 32,
                 row_tokens: int = 128) -> None:
        self.base = model.base_model
        self.head = model.get_output_embeddings()
        params = inspect.signature(self.base.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.token_budget = token_budget
        self.min_prefix = min_prefix
        self.row_tokens = row_tokens
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

    @torch.inference_mode()
    def score_alone(self, questions: list[Question]) -> dict[tuple[Tokens, Tokens],
                                                               tuple[float, bool]]:
        """`score` for contexts that share nothing worth caching (windows cut from the left
        start anywhere): each question its own row from position 0, rows batched by tokens."""
        out: dict[tuple[Tokens, Tokens], tuple[float, bool]] = {}
        if questions:
            self._score_cluster(Cluster(0, questions), out)
        return out

    def _prefix_cache(self, tokens: Tokens) -> list[tuple[torch.Tensor, torch.Tensor]] | None:
        if not tokens:
            return None
        ids = torch.tensor([tokens], device=self.device)
        res = self.base(input_ids=ids, use_cache=True)
        cache = res.cache if hasattr(res, "cache") else res.past_key_values
        return [(layer.keys, layer.values) for layer in cache.layers]

    def _score_cluster(self, cluster: Cluster, out: dict) -> None:
        p = cluster.prefix_len
        kv = self._prefix_cache(cluster.questions[0].context[:p])
        rows = pack_rows(cluster.questions, p, max(self.row_tokens, 1))
        rows.sort(key=lambda r: len(r.tokens))
        start = 0
        while start < len(rows):
            stop = start + 1
            while stop < len(rows) and (stop - start + 1) * len(rows[stop].tokens) <= (
                self.token_budget
            ):
                stop += 1
            batch, start = rows[start:stop], stop
            hidden = self._forward(batch, p, kv)
            self._read_out(batch, hidden, out)

    def _forward(self, batch: list[_Row], p: int, kv) -> torch.Tensor:
        from transformers import DynamicCache

        n, width = len(batch), max(len(r.tokens) for r in batch)
        cols = {"tokens": 0, "question": -1, "segment": -1, "position": p}
        t = {k: torch.full((n, width), fill, dtype=torch.long) for k, fill in cols.items()}
        for i, r in enumerate(batch):
            for k in cols:
                t[k][i, : len(r.tokens)] = torch.tensor(getattr(r, k))
        t = {k: v.to(self.device) for k, v in t.items()}
        q, seg = t["question"], t["segment"]
        idx = torch.arange(width, device=self.device)
        # a token sees the prefix, its question's context and its own option, never another
        block = (idx[None, :] <= idx[:, None]) & (q[:, None, :] == q[:, :, None])
        block &= (seg[:, None, :] == 0) | (seg[:, None, :] == seg[:, :, None])
        block &= q[:, None, :] >= 0
        block |= torch.eye(width, dtype=torch.bool, device=self.device)  # padding: no NaN
        ones = torch.ones(n, width, p, dtype=torch.bool, device=self.device)
        kwargs = {"attention_mask": torch.cat([ones, block], dim=-1)[:, None]}
        if kv is not None:
            kwargs[self.cache_kw] = DynamicCache(
                [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in kv]
            )
        return self.base(input_ids=t["tokens"], position_ids=t["position"],
                         **kwargs).last_hidden_state

    def _read_out(self, batch: list[_Row], hidden: torch.Tensor, out: dict) -> None:
        row_ix, col_ix, target_ix = [], [], []
        for i, r in enumerate(batch):
            for _, option, cols in r.targets:
                row_ix += [i] * len(cols)
                col_ix += cols
                target_ix += option
        dev = hidden.device
        states = hidden[torch.tensor(row_ix, device=dev), torch.tensor(col_ix, device=dev)]
        target = torch.tensor(target_ix, device=dev)
        picked: list[float] = []
        greedy: list[bool] = []
        # vocabulary rows in chunks: logsumexp and argmax read each logits chunk while it is
        # in cache, and no log-softmax copy is written
        for i in range(0, len(target_ix), READOUT_ROWS):
            logits = self.head(states[i : i + READOUT_ROWS]).float()
            tgt = target[i : i + READOUT_ROWS, None]
            ll = logits.gather(1, tgt)[:, 0] - torch.logsumexp(logits, dim=-1)
            picked += ll.tolist()
            greedy += (logits.argmax(dim=-1) == tgt[:, 0]).tolist()
        k = 0
        for r in batch:
            for context, option, cols in r.targets:
                m = len(cols)
                out[(context, option)] = (float(sum(picked[k : k + m])), all(greedy[k : k + m]))
                k += m
