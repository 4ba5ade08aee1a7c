"""One attention for every model: masks (causal, padding, packed segments, cross) decide, not model kinds.

`dot_product_attention` is the pure kernel with three interchangeable backends (and "auto"):
  "xla"   our einsum implementation (grouped heads without repeating K/V; works everywhere),
  "jax"   jax.nn.dot_product_attention's default XLA path (a cross-check on CPU),
  "cudnn" jax.nn.dot_product_attention(implementation="cudnn"): flash attention on GPU,
  "auto"  cudnn on GPU, else xla.
`Attention` is the linen layer: projections, RoPE/ALiBi, dropout and the KV cache for decoding.

Shape key: B batch, L query length, S key length, H query heads, K key/value heads,
G = H // K query heads per K/V head, D head dim, E embed width.
"""
from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from llmjax import sharding as sh
from llmjax.blocks.positions import alibi_bias, apply_rope

BACKENDS = ("auto", "xla", "jax", "cudnn")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """What one attention layer needs; a model config narrows itself to this."""
    num_heads: int
    num_kv_heads: int
    head_dim: int
    position: str = "learned"  # rope / alibi are applied inside attention
    rope_base: float = 10000.0
    dropout: float = 0.0
    use_bias: bool = True
    backend: str = "xla"  # one of BACKENDS
    dtype: str = "float32"
    init_std: float = 0.02
    num_layers: int = 1  # scales the output-projection init (GPT-2)
    scale: float | None = None  # attention-score scale (None = 1 / sqrt(head_dim); mup: sqrt(D_base) / D)
_NEG = -0.7 * float(np.finfo(np.float32).max)  # finite: masked logits never make inf - inf = NaN


def resolve_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"attention backend {backend!r}: must be one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "cudnn" if jax.default_backend() == "gpu" else "xla"
    return backend


def make_attention_mask(q_len: int, kv_len: int, *, causal: bool, q_offset: int | jax.Array = 0,
                        q_segment_ids: jax.Array | None = None,
                        kv_segment_ids: jax.Array | None = None) -> jax.Array | None:
    """Boolean (B|1, 1, L, S) mask, True = attend; None when nothing is masked.

    causal: key index s <= query index t + q_offset (q_offset = KV-cache fill while decoding).
    segments: id 0 marks padding (never attended); otherwise a query sees only keys with
    its own id (packed documents; for cross-attention, its own source document)."""
    mask = None
    if causal:
        t_Lx1 = lax.broadcasted_iota(jnp.int32, (q_len, kv_len), 0) + q_offset
        s_1xS = lax.broadcasted_iota(jnp.int32, (q_len, kv_len), 1)
        mask = (s_1xS <= t_Lx1)[None, None]
    if kv_segment_ids is not None:
        kv_seg_BxS = jnp.asarray(kv_segment_ids)
        seg_Bx1x1xS = (kv_seg_BxS != 0)[:, None, None, :]
        if q_segment_ids is not None:
            q_seg_BxL = jnp.asarray(q_segment_ids)
            seg_Bx1x1xS = seg_Bx1x1xS & (q_seg_BxL[:, None, :, None] == kv_seg_BxS[:, None, None, :])
        mask = seg_Bx1x1xS if mask is None else mask & seg_Bx1x1xS
    elif q_segment_ids is not None:
        q_valid = (jnp.asarray(q_segment_ids) != 0)[:, None, :, None]
        mask = q_valid if mask is None else mask & q_valid
    if mask is not None:
        mask = jnp.broadcast_to(mask, (mask.shape[0], 1, q_len, kv_len))
    return mask


def dot_product_attention(q_BxLxHxD: jax.Array, k_BxSxKxD: jax.Array, v_BxSxKxD: jax.Array, *,
                          causal: bool, q_segment_ids: jax.Array | None = None,
                          kv_segment_ids: jax.Array | None = None, bias: jax.Array | None = None,
                          q_offset: int | jax.Array = 0, dropout_rate: float = 0.0,
                          dropout_rng: jax.Array | None = None, deterministic: bool = True,
                          backend: str = "xla", scale: float | None = None) -> jax.Array:
    """softmax(Q K^T * scale + bias) V with grouped-query heads, scale 1 / sqrt(D) unless given;
    returns (B, L, H, D) in q's dtype.

    segment ids are (B, L) / (B, S) int, 0 = padding; bias is 4-D, broadcastable to
    (B, H, L, S) (ALiBi); q_offset shifts the causal diagonal (may be traced). Logits and softmax are float32. Rows with no
    visible key (padding queries) come out as zeros. Attention dropout and float32 inputs run
    on the "xla" path whatever the backend (cuDNN has neither)."""
    backend = resolve_backend(backend)
    L, S = q_BxLxHxD.shape[1], k_BxSxKxD.shape[1]
    if q_BxLxHxD.shape[2] % k_BxSxKxD.shape[2]:
        raise ValueError(f"{q_BxLxHxD.shape[2]} query heads are not a multiple of "
                         f"{k_BxSxKxD.shape[2]} key/value heads")
    use_dropout = dropout_rate > 0.0 and not deterministic
    if scale is None:
        scale = 1.0 / math.sqrt(q_BxLxHxD.shape[-1])
    if backend == "xla" or use_dropout or (backend == "cudnn" and q_BxLxHxD.dtype == jnp.float32):
        mask = make_attention_mask(L, S, causal=causal, q_offset=q_offset,
                                   q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids)
        rate = dropout_rate if use_dropout else 0.0
        return _xla_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask, bias, rate, dropout_rng, scale)
    # Plain causal self-attention goes as is_causal (flash attention skips the masked blocks).
    is_causal = causal and isinstance(q_offset, int) and q_offset == 0 and L == S
    mask = make_attention_mask(L, S, causal=causal and not is_causal, q_offset=q_offset,
                               q_segment_ids=q_segment_ids, kv_segment_ids=kv_segment_ids)
    return _jax_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask, bias, is_causal,
                          None if backend == "jax" else "cudnn", scale)


def _masked_softmax(logits, mask, dropout_rate, dropout_rng):
    """Float32 softmax over the last axis; masked keys get 0, fully masked rows are all zeros
    (not a uniform average); then attention dropout."""
    if mask is not None:
        logits = jnp.where(mask, logits, _NEG)
    probs = jax.nn.softmax(logits, axis=-1)
    if mask is not None:
        probs = jnp.where(mask, probs, 0.0)
    if dropout_rate > 0.0:
        keep = jax.random.bernoulli(dropout_rng, 1.0 - dropout_rate, probs.shape)
        probs = jnp.where(keep, probs / (1.0 - dropout_rate), 0.0)
    return probs


def _xla_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask, bias, dropout_rate, dropout_rng, scale):
    B, L, H, D = q_BxLxHxD.shape
    K = k_BxSxKxD.shape[2]
    G = H // K
    if G == 1:  # plain multi-head: 4-D einsums (the 5-D grouped form is ~1.5x slower on XLA:CPU)
        return _mha_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask, bias, dropout_rate, dropout_rng,
                              scale)
    q_BxLxKxGxD = q_BxLxHxD.reshape(B, L, K, G, D)  # query head h = k * G + g
    logits_BxKxGxLxS = jnp.einsum("blkgd,bskd->bkgls", q_BxLxKxGxD, k_BxSxKxD,
                                  preferred_element_type=jnp.float32)
    logits_BxKxGxLxS = logits_BxKxGxLxS * jnp.float32(scale)
    if bias is not None:
        bias = jnp.asarray(bias, jnp.float32)
        bias = jnp.broadcast_to(bias, (bias.shape[0], H) + bias.shape[2:]) if bias.shape[1] == 1 else bias
        logits_BxKxGxLxS = logits_BxKxGxLxS + bias.reshape(bias.shape[0], K, G, *bias.shape[2:])
    if mask is not None:
        mask = mask[:, :, None]  # (B|1, 1, 1, L, S)
    probs = _masked_softmax(logits_BxKxGxLxS, mask, dropout_rate, dropout_rng)
    out_BxLxKxGxD = jnp.einsum("bkgls,bskd->blkgd", probs.astype(v_BxSxKxD.dtype), v_BxSxKxD)
    return out_BxLxKxGxD.reshape(B, L, H, D).astype(q_BxLxHxD.dtype)


def _mha_attention(q_BxLxHxD, k_BxSxHxD, v_BxSxHxD, mask, bias, dropout_rate, dropout_rng, scale):
    """_xla_attention for K == H, with the same operations in the same order."""
    logits_BxHxLxS = jnp.einsum("blhd,bshd->bhls", q_BxLxHxD, k_BxSxHxD,
                                preferred_element_type=jnp.float32)
    logits_BxHxLxS = logits_BxHxLxS * jnp.float32(scale)
    if bias is not None:
        logits_BxHxLxS = logits_BxHxLxS + jnp.asarray(bias, jnp.float32)
    probs = _masked_softmax(logits_BxHxLxS, mask, dropout_rate, dropout_rng)  # mask (B|1, 1, L, S)
    out_BxLxHxD = jnp.einsum("bhls,bshd->blhd", probs.astype(v_BxSxHxD.dtype), v_BxSxHxD)
    return out_BxLxHxD.astype(q_BxLxHxD.dtype)


def _jax_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, mask, bias, is_causal, implementation, scale):
    dtype = q_BxLxHxD.dtype
    k_BxSxKxD, v_BxSxKxD = k_BxSxKxD.astype(dtype), v_BxSxKxD.astype(dtype)
    if bias is not None:
        bias = jnp.asarray(bias, jnp.float32 if implementation is None else dtype)
    out = jax.nn.dot_product_attention(q_BxLxHxD, k_BxSxKxD, v_BxSxKxD, bias=bias, mask=mask,
                                       scale=scale, is_causal=is_causal, implementation=implementation)
    if mask is not None:  # where, not multiply: a kernel may leave NaN in fully masked rows
        visible_BxLx1x1 = jnp.transpose(jnp.any(mask, axis=-1, keepdims=True), (0, 2, 1, 3))
        out = jnp.where(visible_BxLx1x1, out, jnp.zeros((), out.dtype))
    return out.astype(dtype)


def _logits_abs_mean(q_BxLxHxD: jax.Array, k_BxSxKxD: jax.Array, cfg: AttentionConfig) -> jax.Array:
    """mean |q.k * scale| over heads and all query-key pairs, masked or not (a width diagnostic)."""
    G = q_BxLxHxD.shape[2] // k_BxSxKxD.shape[2]
    k_BxSxHxD = jnp.repeat(k_BxSxKxD, G, axis=2)
    logits_BxHxLxS = jnp.einsum("blhd,bshd->bhls", q_BxLxHxD, k_BxSxHxD, preferred_element_type=jnp.float32)
    scale = cfg.scale if cfg.scale is not None else 1.0 / math.sqrt(cfg.head_dim)
    return jnp.mean(jnp.abs(logits_BxHxLxS)) * scale


# ---------------------------------------------------------------- the layer


class Projection(nn.Module):
    """x (..., *in) . kernel (*in, *features) + bias (*features), contracting the last
    `in_dims` axes of x. (DenseGeneral initialises a flattened kernel, which trips the logical
    constraint on the boxed init under a mesh; this builds the kernel in its final shape.)"""

    features: tuple[int, ...]
    names: tuple[str, ...]  # logical names of the kernel axes; the bias takes the trailing ones
    in_dims: int = 1
    init_std: float = 0.02
    use_bias: bool = True
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_shape = x.shape[x.ndim - self.in_dims:]
        lead = x.shape[:x.ndim - self.in_dims]
        kernel = self.param(
            "kernel", nn.with_logical_partitioning(nn.initializers.normal(self.init_std), self.names),
            in_shape + tuple(self.features), jnp.float32)
        # One 2-D dot (rows, in) x (in, out): XLA:CPU handles the weight gradient of a dot with
        # several contracting/batch-like dims much worse (see FeedForward). Reshapes are bitcasts.
        k_in, k_out = math.prod(in_shape), math.prod(self.features)
        y = jnp.dot(x.reshape(-1, k_in).astype(self.dtype), kernel.reshape(k_in, k_out).astype(self.dtype))
        y = y.reshape(*lead, *self.features)
        if self.use_bias:
            bias_names = self.names[len(self.names) - len(self.features):]
            bias = self.param("bias", nn.with_logical_partitioning(nn.initializers.zeros_init(), bias_names),
                              tuple(self.features), jnp.float32)
            y = y + bias.astype(self.dtype)
        return y


class Attention(nn.Module):
    """Multi-head (grouped-query) attention; cross=True attends onto `kv` (an encoder's output).

    RoPE/ALiBi act when both sides' positions are known: always in self-attention, in
    cross-attention only if `positions` and `kv_positions` are both given (usually not).
    With decode=True self-attention keeps a KV cache (collection "cache") whose length is
    the length of the input the cache was initialised with; each call appends its L tokens
    and attends causally to everything filled. Cross-attention with decode=True projects `kv`
    into keys and values once, when it is given (the first decoding call), caches them with
    its segment ids, and attends to the cache when it is not. Decoding always uses the "xla"
    kernel: one query row against a masked cache is memory-bound, and cuDNN's shape limits are
    avoided."""

    cfg: AttentionConfig
    causal: bool = True
    cross: bool = False

    @nn.compact
    def __call__(self, x_BxLxE: jax.Array, kv_BxSxE: jax.Array | None = None, *,
                 positions: jax.Array | None = None, kv_positions: jax.Array | None = None,
                 segment_ids: jax.Array | None = None, kv_segment_ids: jax.Array | None = None,
                 deterministic: bool = True, decode: bool = False) -> jax.Array:
        cfg = self.cfg
        H, K, D, E = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, x_BxLxE.shape[-1]
        B, L = x_BxLxE.shape[:2]
        self_attention = not self.cross
        if self.cross and kv_BxSxE is None and not decode:
            raise ValueError("cross-attention needs the encoder output (kv) unless decoding on its cache")
        dense = functools.partial(Projection, use_bias=cfg.use_bias, dtype=cfg.dtype)
        std = cfg.init_std
        q = dense((H, D), (sh.EMBED, sh.HEADS, sh.HEAD_DIM), init_std=std, name="query")(x_BxLxE)
        q = nn.with_logical_constraint(q, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_HEADS, None))
        q_seg, kv_seg = segment_ids, kv_segment_ids
        if self.cross and decode:  # keys and values of the source: projected once, then cached
            k, v, kv_seg = self._cross_cache(dense, kv_BxSxE, kv_segment_ids)
            q_seg = None  # one source per row while decoding
        else:
            source = x_BxLxE if self_attention else kv_BxSxE
            k = dense((K, D), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), init_std=std, name="key")(source)
            v = dense((K, D), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), init_std=std, name="value")(source)
        k = nn.with_logical_constraint(k, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_KV_HEADS, None))
        v = nn.with_logical_constraint(v, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_KV_HEADS, None))

        q_offset = 0
        cache = self._cache(k, v) if decode and self_attention else None
        if self_attention:
            if positions is None:
                positions = jnp.arange(L)[None] + (cache["index"].value if cache is not None else 0)
            kv_positions, kv_seg = positions, segment_ids
        relative = positions is not None and kv_positions is not None
        if relative and cfg.position == "rope":
            q, k = apply_rope(q, positions, cfg.rope_base), apply_rope(k, kv_positions, cfg.rope_base)
        if cache is not None and cache["ready"]:
            q_seg = segment_ids if segment_ids is not None else jnp.ones((B, L), jnp.int32)
            positions = jnp.broadcast_to(positions, (B, L))
            k, v, kv_positions, kv_seg, q_offset = self._append(cache, k, v, positions, q_seg)

        bias = None
        if relative and cfg.position == "alibi":
            bias = alibi_bias(jnp.broadcast_to(positions, (B, L)),
                              jnp.broadcast_to(kv_positions, (B, k.shape[1])), H)
        dropout_rng = None
        if cfg.dropout > 0.0 and not deterministic:
            dropout_rng = self.make_rng("dropout")
        out_BxLxHxD = dot_product_attention(
            q, k, v, causal=self.causal, q_segment_ids=q_seg, kv_segment_ids=kv_seg, bias=bias,
            q_offset=q_offset, dropout_rate=cfg.dropout, dropout_rng=dropout_rng,
            deterministic=deterministic, backend="xla" if decode else cfg.backend, scale=cfg.scale)
        if self.is_mutable_collection("intermediates") and not decode:  # diagnostics only (coord check)
            self.sow("intermediates", "logits_abs_mean", _logits_abs_mean(q, k, cfg))
        out_BxLxHxD = nn.with_logical_constraint(out_BxLxHxD, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_HEADS, None))
        out_std = cfg.init_std / math.sqrt(2 * cfg.num_layers)
        out = dense((E,), (sh.HEADS, sh.HEAD_DIM, sh.EMBED), in_dims=2, init_std=out_std,
                    name="out")(out_BxLxHxD)
        return nn.with_logical_constraint(out, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

    def _cross_cache(self, dense, kv_BxSxE, kv_segment_ids):
        """Cross-attention keys, values and source segment ids: computed from kv_BxSxE and stored
        when it is given, read back when it is None."""
        cfg = self.cfg
        K, D = cfg.num_kv_heads, cfg.head_dim
        if kv_BxSxE is not None:
            B, S = kv_BxSxE.shape[:2]
            k = dense((K, D), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), init_std=cfg.init_std, name="key")(kv_BxSxE)
            v = dense((K, D), (sh.EMBED, sh.KV_HEADS, sh.HEAD_DIM), init_std=cfg.init_std, name="value")(kv_BxSxE)
            seg = jnp.ones((B, S), jnp.int32) if kv_segment_ids is None else jnp.asarray(kv_segment_ids, jnp.int32)
            for name, value in (("cross_key", k), ("cross_value", v), ("cross_segment_ids", seg)):
                self.variable("cache", name, jnp.zeros, value.shape, value.dtype).value = value
            return k, v, seg
        if not self.has_variable("cache", "cross_key"):
            raise ValueError("cross-attention decoding without the encoder output: the first decoding "
                             "call must pass it, so its keys and values are cached")
        return tuple(self.get_variable("cache", n) for n in ("cross_key", "cross_value", "cross_segment_ids"))

    def _cache(self, k_BxLxKxD, v_BxLxKxD) -> dict:
        """Cache variables, created at init with the init input's length as the cache length."""
        ready = self.has_variable("cache", "cached_key")
        B, S = k_BxLxKxD.shape[:2]
        return {
            "ready": ready,
            "key": self.variable("cache", "cached_key", jnp.zeros, k_BxLxKxD.shape, k_BxLxKxD.dtype),
            "value": self.variable("cache", "cached_value", jnp.zeros, v_BxLxKxD.shape, v_BxLxKxD.dtype),
            # Unfilled slots keep segment id 0, so the padding mask hides them.
            "segment_ids": self.variable("cache", "cached_segment_ids", jnp.zeros, (B, S), jnp.int32),
            "positions": self.variable("cache", "cached_positions", jnp.zeros, (B, S), jnp.int32),
            "index": self.variable("cache", "cache_index", lambda: jnp.zeros((), jnp.int32)),
        }

    @staticmethod
    def _append(cache, k_BxLxKxD, v_BxLxKxD, positions_BxL, segment_ids_BxL):
        """Write the new L tokens at the cache index; return the whole cache to attend to."""
        i = cache["index"].value
        ck, cv = cache["key"], cache["value"]
        ck.value = lax.dynamic_update_slice(ck.value, k_BxLxKxD.astype(ck.value.dtype), (0, i, 0, 0))
        cv.value = lax.dynamic_update_slice(cv.value, v_BxLxKxD.astype(cv.value.dtype), (0, i, 0, 0))
        cache["positions"].value = lax.dynamic_update_slice(
            cache["positions"].value, positions_BxL.astype(jnp.int32), (0, i))
        cache["segment_ids"].value = lax.dynamic_update_slice(
            cache["segment_ids"].value, jnp.asarray(segment_ids_BxL, jnp.int32), (0, i))
        cache["index"].value = i + k_BxLxKxD.shape[1]
        return ck.value, cv.value, cache["positions"].value, cache["segment_ids"].value, i
