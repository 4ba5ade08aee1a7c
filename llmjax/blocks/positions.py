"""Position information: absolute tables (sinusoidal, learned) and relative schemes (RoPE, ALiBi).

Absolute tables are added to the token embeddings by the model; RoPE and ALiBi act inside
attention, so they take explicit positions (which restart per packed document and follow the
KV-cache index while decoding).

Shape key: B batch, L query length, S key length, H heads, D head dim, E embed width.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from llmjax import sharding as sh

POSITIONS = ("sinusoidal", "learned", "rope", "alibi")  # absolute (added by the model) or in attention


# ---------------------------------------------------------------- sinusoidal (Vaswani et al.)


def sinusoidal_table(length: int, dim: int, base: float = 10000.0) -> np.ndarray:
    """PE[p, 2i] = sin(p / base^(2i/dim)), PE[p, 2i+1] = cos(p / base^(2i/dim)); shape (length, dim)."""
    return np.asarray(sinusoidal_embedding(np.arange(length), dim, base))


def sinusoidal_embedding(positions, dim: int, base: float = 10000.0) -> jnp.ndarray:
    """The sinusoidal code of arbitrary integer positions (any shape ...), float32 (..., dim).

    Computed on the fly rather than looked up so any position (packed, offset) works."""
    half = (dim + 1) // 2
    inv_freq = 1.0 / (base ** (np.arange(half, dtype=np.float64) * 2.0 / dim))
    angles = jnp.asarray(positions, jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)
    # Interleave: even channels sin, odd channels cos, as in the paper.
    pe = jnp.stack([jnp.sin(angles), jnp.cos(angles)], axis=-1).reshape(*angles.shape[:-1], 2 * half)
    return pe[..., :dim]


# ---------------------------------------------------------------- learned table


def token_positions(module: nn.Module, positions: jnp.ndarray | None, batch: int, length: int,
                    decode: bool) -> jnp.ndarray:
    """(B, L) int32 positions of a model's input, from inside its compact call: as given, else
    0..L-1. While decoding, by default each row continues from its next position, kept in
    `module`'s cache ("next_position", (B,)), and the cache records where each row stands
    after the call (not while init creates it)."""
    if positions is None and not decode:
        positions = jnp.arange(length, dtype=jnp.int32)[None]
    if decode:
        ready = module.has_variable("cache", "next_position")
        next_B = module.variable("cache", "next_position", jnp.zeros, (batch,), jnp.int32)
        if positions is None:
            positions = jnp.arange(length, dtype=jnp.int32)[None] + (next_B.value[:, None] if ready else 0)
        if ready:
            next_B.value = jnp.broadcast_to(positions, (batch, length))[:, -1].astype(jnp.int32) + 1
    return jnp.broadcast_to(jnp.asarray(positions, jnp.int32), (batch, length))


class LearnedPositions(nn.Module):
    """A trainable (max_len, E) table (GPT-2 `wpe`); positions beyond it read NaN, loudly."""

    max_len: int
    features: int
    init_std: float = 0.02
    dtype: str = "float32"

    @nn.compact
    def __call__(self, positions_BxL: jnp.ndarray) -> jnp.ndarray:
        table_LxE = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (sh.LENGTH, sh.EMBED)),
            (self.max_len, self.features), jnp.float32)
        return jnp.take(table_LxE, positions_BxL, axis=0).astype(self.dtype)


# ---------------------------------------------------------------- RoPE (Su et al.)


def apply_rope(x_BxLxHxD: jnp.ndarray, positions_BxL: jnp.ndarray, base: float = 10000.0) -> jnp.ndarray:
    """Rotate channel pairs (i, i + D/2) by angle p * base^(-2i/D) (the GPT-NeoX / LLaMA layout).

    q.k after rotation depends on positions only through their difference. Math in float32."""
    d = x_BxLxHxD.shape[-1]
    if d % 2:
        raise ValueError(f"RoPE needs an even head dim, got {d}")
    half = d // 2
    inv_freq = 1.0 / (base ** (np.arange(half, dtype=np.float64) * 2.0 / d))
    positions_BxL = jnp.broadcast_to(jnp.asarray(positions_BxL), x_BxLxHxD.shape[:2])
    angles_BxLx1xF = (positions_BxL.astype(jnp.float32)[..., None]
                      * jnp.asarray(inv_freq, jnp.float32))[:, :, None, :]
    sin, cos = jnp.sin(angles_BxLx1xF), jnp.cos(angles_BxLx1xF)
    x = x_BxLxHxD.astype(jnp.float32)
    x1, x2 = x[..., :half], x[..., half:]
    out = jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
    return out.astype(x_BxLxHxD.dtype)


# ---------------------------------------------------------------- ALiBi (Press et al.)


def alibi_slopes(num_heads: int) -> np.ndarray:
    """The paper's geometric slopes: for n a power of two, 2^(-8/n), 2^(-16/n), ...

    Otherwise the slopes of the closest smaller power of two p, then every other slope of 2p
    until n heads are covered (the reference implementation's rule)."""
    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if num_heads <= 0:
        raise ValueError(f"num_heads must be positive, got {num_heads}")
    p = 2 ** int(math.floor(math.log2(num_heads)))
    slopes = power_of_two(p)
    if p < num_heads:
        slopes += power_of_two(2 * p)[0::2][: num_heads - p]
    return np.asarray(slopes, np.float64)


def alibi_bias(q_positions_BxL: jnp.ndarray, kv_positions_BxS: jnp.ndarray, num_heads: int) -> jnp.ndarray:
    """Additive bias -slope_h * |q_pos - k_pos|, float32 (B, H, L, S).

    For causal attention this is the paper's slope * (k - q); the symmetric form also serves
    bidirectional encoders."""
    slopes_H = jnp.asarray(alibi_slopes(num_heads), jnp.float32)
    q = jnp.asarray(q_positions_BxL, jnp.int32)
    k = jnp.asarray(kv_positions_BxS, jnp.int32)
    q, k = jnp.atleast_2d(q), jnp.atleast_2d(k)
    dist_BxLxS = jnp.abs(q[:, :, None] - k[:, None, :]).astype(jnp.float32)
    return -slopes_H[None, :, None, None] * dist_BxLxS[:, None, :, :]
