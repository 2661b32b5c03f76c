"""A freshly initialised Olmo2 model directory with OLMo's tokenizer (the one ai2-olmo-eval
ships), so that the eval path can be checked and timed end to end without any download."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

OLMO_TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
EOS, PAD = "<|endoftext|>", "<|padding|>"


def olmo_tokenizer_file() -> Path:
    return Path(str(resources.files("olmo_eval"))) / OLMO_TOKENIZER


def make_tiny_olmo2(
    out_dir: str | Path,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 2,
    max_len: int = 2048,
    seed: int = 0,
) -> Path:
    """Write config, weights and tokenizer of a random Olmo2 to `out_dir`; returns it."""
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(olmo_tokenizer_file()), eos_token=EOS, pad_token=PAD
    )
    torch.manual_seed(seed)
    cfg = Olmo2Config(
        vocab_size=128 * -(-len(tok) // 128),
        hidden_size=d_model,
        intermediate_size=4 * d_model,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        num_key_value_heads=n_heads,
        max_position_embeddings=max_len,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    model = Olmo2ForCausalLM(cfg).eval()
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out
