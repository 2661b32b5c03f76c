"""The tiny-model fixture: a freshly initialised Olmo2 folder with a real tokenizer, so the eval
path can be checked and timed end to end with no download. The tokenizer is OLMo's own (the
one ai2-olmo-eval ships, 50k vocabulary) or a small byte-level BPE trained by training's own
`train_bpe` on OLMES questions (a small vocabulary keeps the output layer, which dominates CPU
time for tiny models, cheap). Used by tests/conftest.py and benchmarks/."""

from __future__ import annotations

import tempfile
from importlib import resources
from pathlib import Path

OLMO_TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
EOS, PAD = "<|endoftext|>", "<|padding|>"


def _tokenizer(vocab_size: int | None, max_len: int):
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    if vocab_size is None:
        path = Path(str(resources.files("olmo_eval"))) / OLMO_TOKENIZER
        return PreTrainedTokenizerFast(tokenizer_file=str(path), eos_token=EOS, pad_token=PAD,
                                       model_max_length=max_len)
    from taskladder.harness_ext.olmes import olmes_docs
    from taskladder.training.corpus import train_bpe

    # questions and answers, not whole prompts: the repeated 5-shot block would become tokens
    docs = [d for t in ("arc_easy", "piqa") for d in olmes_docs(t, "rc")]
    texts = [d["context"].rsplit("\n\n", 1)[-1] + "".join(d["continuations"]) for d in docs]
    with tempfile.TemporaryDirectory() as tmp:
        train_bpe(texts, vocab_size, max_len, Path(tmp))
        return AutoTokenizer.from_pretrained(tmp)


def make_tiny_olmo2(out_dir: str | Path, vocab_size: int | None = 1024, d_model: int = 64,
                    n_layers: int = 2, n_heads: int = 2, max_len: int = 4096,
                    seed: int = 0, intermediate: int | None = None) -> Path:
    """Config, weights and tokenizer of a random Olmo2 in `out_dir` (returned).
    `vocab_size=None` uses OLMo's tokenizer, else a BPE of that size."""
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM

    out = Path(out_dir)
    tok = _tokenizer(vocab_size, max_len)
    torch.manual_seed(seed)
    cfg = Olmo2Config(
        vocab_size=128 * -(-len(tok) // 128),
        hidden_size=d_model,
        intermediate_size=intermediate or 4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_len,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    Olmo2ForCausalLM(cfg).eval().save_pretrained(out)
    tok.save_pretrained(out)
    return out
