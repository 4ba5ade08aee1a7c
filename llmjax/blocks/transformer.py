"""One Transformer layer: self-attention, optional cross-attention, feed-forward, each a residual
sublayer with dropout, normalised before ("pre", GPT-2) or after ("post", Vaswani et al.).

The same layer serves a decoder-only LM (causal, no cross), an encoder (not causal) and an
encoder-decoder's decoder (causal + cross-attention onto the encoder output).

Call arguments are positional-or-keyword so `nn.remat` can mark deterministic/decode static
(positions 6 and 7 counting self as 0): see `REMAT_STATIC_ARGNUMS`.

Shape key: B batch, L length, S source (encoder) length, E embed width.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.attention import Attention
from llmjax.blocks.ffn import FeedForward
from llmjax.blocks.norms import make_norm
from llmjax.config import ModelConfig

REMAT_STATIC_ARGNUMS = (6, 7)  # deterministic, decode


class TransformerLayer(nn.Module):
    """pre:  x + drop(f(norm(x)))   post: norm(x + drop(f(x)))   for f in attn, [cross], ffn."""

    cfg: ModelConfig
    causal: bool = True
    cross_attention: bool = False

    @nn.compact
    def __call__(self, x_BxLxE, encoded_BxSxE=None, positions=None, segment_ids=None,
                 encoded_segment_ids=None, deterministic: bool = True,
                 decode: bool = False) -> jnp.ndarray:
        cfg = self.cfg
        if cfg.norm_position not in ("pre", "post"):
            raise ValueError(f"norm_position {cfg.norm_position!r}: must be pre or post")
        pre = cfg.norm_position == "pre"
        drop = lambda y: nn.Dropout(cfg.dropout)(y, deterministic=deterministic)  # noqa: E731

        def sublayer(x, fn, norm_name):
            norm = make_norm(cfg.norm, cfg.dtype, name=norm_name)
            if pre:
                return x + drop(fn(norm(x)))
            return norm(x + drop(fn(x)))

        x_BxLxE = nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))
        attn = Attention(cfg.attention(), causal=self.causal, name="attn")
        x_BxLxE = sublayer(x_BxLxE, lambda h: attn(
            h, positions=positions, segment_ids=segment_ids, deterministic=deterministic,
            decode=decode), "attn_norm")

        if self.cross_attention:
            if encoded_BxSxE is None:
                raise ValueError("a cross-attention layer needs the encoder output")
            cross = Attention(cfg.attention(), causal=False, name="cross_attn")
            # Packed cross-attention: decoder segment i sees only encoder segment i.
            x_BxLxE = sublayer(x_BxLxE, lambda h: cross(
                h, encoded_BxSxE, segment_ids=segment_ids if encoded_segment_ids is not None else None,
                kv_segment_ids=encoded_segment_ids, deterministic=deterministic), "cross_norm")

        ffn = FeedForward(mlp_dim=cfg.mlp_dim, kind=cfg.ffn, use_bias=cfg.use_bias, dropout=0.0,
                          dtype=cfg.dtype, init_std=cfg.init_std, num_layers=cfg.num_layers,
                          name="ffn")
        x_BxLxE = sublayer(x_BxLxE, lambda h: ffn(h, deterministic=deterministic), "ffn_norm")
        return nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))
