"""Neural-network building blocks shared by every model; they import nothing above them."""
from llmjax.blocks.attention import Attention, dot_product_attention, make_attention_mask
from llmjax.blocks.embed import Embed, Unembed
from llmjax.blocks.ffn import FeedForward
from llmjax.blocks.norms import LayerNorm, RMSNorm, make_norm
from llmjax.blocks.positions import (LearnedPositions, alibi_bias, alibi_slopes, apply_rope,
                                     sinusoidal_embedding, sinusoidal_table)
from llmjax.blocks.transformer import TransformerLayer

__all__ = [
    "Attention", "Embed", "FeedForward", "LayerNorm", "LearnedPositions", "RMSNorm",
    "TransformerLayer", "Unembed", "alibi_bias", "alibi_slopes", "apply_rope", "dot_product_attention",
    "make_attention_mask", "make_norm", "sinusoidal_embedding", "sinusoidal_table",
]
