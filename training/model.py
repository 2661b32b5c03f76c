"""The OLMo-2 model of a ladder size, and the parameter count the laws use.

N = olmo-core's `num_non_embedding_params`: all parameters except the input embedding, so
the output head (d_model x padded vocab) and the final norm ARE included. This is the count
of the paper (190M -> 190,354,176 with the dolma2 vocabulary padded to 100,352).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from olmo_core.nn.transformer import TransformerConfig

    from taskladder.training.spec import ModelSize


def model_config(size: ModelSize, vocab_size: int) -> TransformerConfig:
    """The olmo-core config the `olmo2_*` presets build, at this size's shape."""
    from olmo_core.nn.transformer import TransformerBlockType, TransformerConfig

    return TransformerConfig.llama_like(
        d_model=size.d_model,
        n_layers=size.n_layers,
        n_heads=size.n_heads,
        vocab_size=vocab_size,
        hidden_size_multiplier=size.hidden_size_multiplier,
        hidden_size_multiple_of=size.hidden_size_multiple_of,
        block_name=TransformerBlockType.reordered_norm,
        qk_norm=True,
        rope_theta=500_000,
        layer_norm_eps=1e-6,
    )
