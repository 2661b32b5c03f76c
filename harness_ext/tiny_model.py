"""A freshly initialised Olmo2 model directory with a real tokenizer, so that the eval path can
be checked and timed end to end without any download: OLMo's own (the one ai2-olmo-eval ships,
50k vocabulary) or a small byte-level BPE trained in a second on OLMES prompts (a small vocabulary
keeps the output layer, which dominates CPU time for tiny models, cheap)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

OLMO_TOKENIZER = "tokenizers/allenai_gpt-neox-olmo-dolma-v1_5.json"
EOS, PAD = "<|endoftext|>", "<|padding|>"


def olmo_tokenizer_file() -> Path:
    return Path(str(resources.files("olmo_eval"))) / OLMO_TOKENIZER


def _small_bpe(vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from taskladder.harness_ext.olmes import olmes_docs

    # the questions and answers, not whole prompts: the repeated 5-shot block would become tokens
    docs = [d for t in ("arc_easy", "piqa") for d in olmes_docs(t, "rc")]
    texts = [d["context"].rsplit("\n\n", 1)[-1] + "".join(d["continuations"]) for d in docs]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS, PAD],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def make_tiny_olmo2(
    out_dir: str | Path,
    vocab_size: int | None = None,
    d_model: int = 64,
    n_layers: int = 2,
    n_heads: int = 2,
    max_len: int = 2048,
    seed: int = 0,
) -> Path:
    """Write config, weights and tokenizer of a random Olmo2 to `out_dir`; returns it.
    `vocab_size=None` uses OLMo's tokenizer, else a BPE of that size."""
    import torch
    from transformers import Olmo2Config, Olmo2ForCausalLM, PreTrainedTokenizerFast

    out = Path(out_dir)
    source = (
        {"tokenizer_file": str(olmo_tokenizer_file())}
        if vocab_size is None
        else {"tokenizer_object": _small_bpe(vocab_size)}
    )
    tok = PreTrainedTokenizerFast(**source, eos_token=EOS, pad_token=PAD)
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
