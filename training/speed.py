"""A plain PyTorch training loop on the ladder's model: the speed baseline and the ETA probe.

Same model (olmo-core `Transformer`), same AdamW and clipping as the Trainer, no Trainer
machinery; `benchmarks/bench_training.py` compares olmo-core's tokens/s against it, and the
ladder measures a few of its steps per size to predict its wall time before it starts.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F

from taskladder.training.model import model_config
from taskladder.training.spec import LadderSpec, ModelSize


def plain_train(model: torch.nn.Module, batches: Iterable[torch.Tensor], lr: float,
                weight_decay: float = 0.1) -> tuple[int, float, list[float]]:
    """Train on `batches` (token id tensors, B x T); returns (tokens, seconds, losses)."""
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.95), eps=1e-8,
                            weight_decay=weight_decay)
    model.train()
    tokens, losses = 0, []
    start = time.perf_counter()
    for ids in batches:
        logits = model(ids)[:, :-1]  # full windows, like the Trainer (last label ignored)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        tokens += ids.numel()
    return tokens, time.perf_counter() - start, losses


def probe_tokens_per_second(size: ModelSize, spec: LadderSpec, steps: int = 3,
                            warmup: int = 3) -> float:
    """Tokens/s of a few plain steps on random tokens: median step after `warmup` untimed ones.

    The median keeps one step slowed by a busy machine from skewing the estimate.
    """
    torch.manual_seed(spec.seed)
    model = model_config(size, spec.vocab_size).build(init_device="cpu")
    gen = torch.Generator().manual_seed(spec.seed)
    batches = [torch.randint(0, spec.tokenizer.vocab_size,
                             (size.batch_sequences, spec.sequence_length), generator=gen)
               for _ in range(warmup + steps)]
    plain_train(model, batches[:warmup], lr=1e-3)
    times = [plain_train(model, [b], lr=1e-3)[1] for b in batches[warmup:]]
    return batches[0].numel() / statistics.median(times)
