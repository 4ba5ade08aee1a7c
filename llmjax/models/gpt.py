"""GPT: a decoder-only causal language model (Radford et al. 2019), configurable toward LLaMA-style
variants (RoPE/ALiBi, RMSNorm, SwiGLU, grouped-query attention, untied head).

Also the model's size and cost arithmetic: `num_params` and `flops_per_token`.

Shape key: B batch, L length, E embed width (d_model), V padded vocabulary.
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.embed import Embed, Unembed
from llmjax.blocks.norms import make_norm
from llmjax.blocks.positions import LearnedPositions, sinusoidal_embedding
from llmjax.blocks.transformer import REMAT_STATIC_ARGNUMS, TransformerLayer
from llmjax.config import ModelConfig
from llmjax.models.registry import register

REMATS = ("none", "full", "dots_saveable")


def _layer_class(remat: str, decode: bool) -> type[nn.Module]:
    """The layer, rematerialised per cfg.remat (never while decoding: there is no backward)."""
    if remat not in REMATS:
        raise ValueError(f"remat {remat!r}: must be one of {', '.join(REMATS)}")
    if remat == "none" or decode:
        return TransformerLayer
    policy = jax.checkpoint_policies.dots_with_no_batch_dims_saveable if remat == "dots_saveable" else None
    return nn.remat(TransformerLayer, policy=policy, static_argnums=REMAT_STATIC_ARGNUMS)


class GPT(nn.Module):
    """tokens (B, L) int32 -> next-token logits (B, L, V) float32.

    positions default to 0..L-1 (while decoding: continuing from the tokens already cached);
    packed rows pass per-document positions and segment_ids (id 0 = padding), which also
    confine attention to each document. decode=True runs on the KV cache (collection "cache",
    initialised by `init(..., decode=True)` on a (B, cache_len) input)."""

    cfg: ModelConfig

    @nn.compact
    def __call__(self, tokens_BxL: jnp.ndarray, *, positions: jnp.ndarray | None = None,
                 segment_ids: jnp.ndarray | None = None, deterministic: bool = True,
                 decode: bool = False) -> jnp.ndarray:
        cfg = self.cfg
        B, L = tokens_BxL.shape
        if positions is None:
            positions = self._default_positions(L, decode)
        positions_BxL = jnp.broadcast_to(jnp.asarray(positions, jnp.int32), (B, L))

        embed = Embed(cfg.vocab_size, cfg.d_model, cfg.init_std, cfg.dtype, name="embed")
        x_BxLxE = embed(tokens_BxL)
        if cfg.position == "learned":
            x_BxLxE = x_BxLxE + LearnedPositions(cfg.max_len, cfg.d_model, cfg.init_std, cfg.dtype,
                                                 name="pos_embed")(positions_BxL)
        elif cfg.position == "sinusoidal":
            x_BxLxE = x_BxLxE + sinusoidal_embedding(positions_BxL, cfg.d_model).astype(cfg.dtype)
        x_BxLxE = nn.Dropout(cfg.dropout)(x_BxLxE, deterministic=deterministic)
        x_BxLxE = nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

        layer_cls = _layer_class(cfg.remat, decode)
        for i in range(cfg.num_layers):
            # Positional call: nn.remat needs deterministic/decode at fixed (static) positions.
            x_BxLxE = layer_cls(cfg, causal=True, name=f"layer_{i}")(
                x_BxLxE, None, positions_BxL, segment_ids, None, deterministic, decode)

        if cfg.norm_position == "pre":  # post-norm layers already end normalised
            x_BxLxE = make_norm(cfg.norm, cfg.dtype, name="final_norm")(x_BxLxE)
        if cfg.tie_embeddings:
            logits_BxLxV = embed.attend(x_BxLxE)
        else:
            logits_BxLxV = Unembed(cfg.vocab_size, cfg.init_std, cfg.dtype, name="head")(x_BxLxE)
        logits_BxLxV = logits_BxLxV.astype(jnp.float32)
        return nn.with_logical_constraint(logits_BxLxV, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))

    def _default_positions(self, length: int, decode: bool) -> jnp.ndarray:
        """0..L-1, or while decoding the next L positions after those already cached."""
        positions = jnp.arange(length, dtype=jnp.int32)[None]
        if not decode:
            return positions
        ready = self.has_variable("cache", "position_index")
        index = self.variable("cache", "position_index", lambda: jnp.zeros((), jnp.int32))
        if not ready:  # init call: creating the cache, nothing cached yet
            return positions
        start = index.value
        index.value = start + length
        return positions + start


@register("gpt")
def build_gpt(cfg: ModelConfig) -> GPT:
    return GPT(cfg)


# ---------------------------------------------------------------- size and cost


def num_params(params: Any) -> int:
    """Total parameter count of a (possibly logically boxed) parameter tree."""
    params = nn.unbox(params)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))


def matmul_params(cfg: ModelConfig) -> int:
    """Parameters that take part in matmuls: attention and FFN kernels and the output head
    (the token table once when tied). Excluded: lookups (untied input table, learned positions),
    biases, norms."""
    d, h, kv, hd = cfg.d_model, cfg.num_heads, cfg.num_kv_heads, cfg.head_dim
    attn = d * h * hd + 2 * d * kv * hd + h * hd * d
    ffn = (3 if cfg.ffn == "swiglu" else 2) * d * cfg.mlp_dim
    return cfg.num_layers * (attn + ffn) + d * cfg.vocab_size


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token, forward + backward: 6 N_matmul + 12 n_layers d_model T
    (the PaLM appendix B / nanoGPT estimate; the attention term ignores the causal half)."""
    return 6.0 * matmul_params(cfg) + 12.0 * cfg.num_layers * cfg.d_model * seq_len
