"""Copy attention (the pointer-generator of See et al. 2017, as used for code summarisation by
Ahmad et al. 2020): the decoder may emit a source token by pointing at it.

p(w) = g * softmax(vocab_logits)(w) + (1 - g) * sum of the attention on source positions holding w,
with g = sigmoid(w_g . y). The head returns log p, so everything downstream that takes logits
(cross-entropy, sampling, beam search) sees the mixture unchanged.

Label smoothing is the exception: its uniform term on log p would reward mass on every id, which
only the generation route can give (copying covers the source's few ids), and so would push
about label_smoothing * -log g nats per token against copying whatever the target is. The
seq2seq task therefore puts the uniform term on the generation distribution softmax(vocab_logits)
alone (the model returns those logits beside log p for it) and keeps the (1 - eps) NLL on the
mixture: the generator is smoothed as in a plain Transformer, the gate learns from the NLL only.
(OpenNMT-py's copy loss drops smoothing altogether; this keeps its regularisation of the
generator.)

While decoding, the source's keys, ids and segment ids are cached on the first call, as the
cross-attention caches its keys and values.

Shape key: B batch, T target length, S source length, E embed width, V padded vocabulary.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh
from llmjax.blocks.attention import Projection

_TINY = 1e-9  # floor of p before the log: a token with neither route stays finite


class CopyHead(nn.Module):
    """(decoder output, vocabulary logits, the source) -> log p of the mixture (B, T, V) float32;
    a target position attends only to its own segment's source (packed rows)."""

    init_std: float
    dtype: str = "float32"

    @nn.compact
    def __call__(self, y_BxTxE: jax.Array, vocab_logits_BxTxV: jax.Array, *,
                 encoded_BxSxE: jax.Array | None, source_BxS: jax.Array | None,
                 source_segment_ids: jax.Array | None, target_segment_ids: jax.Array | None,
                 decode: bool = False) -> jax.Array:
        E = y_BxTxE.shape[-1]
        dense = lambda n, name: Projection((n,), (sh.EMBED, sh.EMBED_OUT), init_std=self.init_std,  # noqa: E731
                                          dtype=self.dtype, name=name)
        query_BxTxE = dense(E, "query")(y_BxTxE)
        key_BxSxE, ids_BxS, seg_BxS = self._source(dense(E, "key"), encoded_BxSxE, source_BxS,
                                                   source_segment_ids, decode)
        scores_BxTxS = jnp.einsum("bte,bse->bts", query_BxTxE, key_BxSxE).astype(jnp.float32) / math.sqrt(E)
        valid_BxTxS = (seg_BxS > 0)[:, None, :]
        if target_segment_ids is not None and not decode:
            valid_BxTxS = valid_BxTxS & (jnp.asarray(target_segment_ids)[:, :, None] == seg_BxS[:, None, :])
        scores_BxTxS = jnp.where(valid_BxTxS, scores_BxTxS, -1e30)
        attn_BxTxS = jnp.where(valid_BxTxS, jax.nn.softmax(scores_BxTxS, axis=-1), 0.0)
        gate_BxTx1 = jax.nn.sigmoid(dense(1, "gate")(y_BxTxE).astype(jnp.float32))
        B, T, V = vocab_logits_BxTxV.shape
        b = jnp.arange(B)[:, None, None]
        t = jnp.arange(T)[None, :, None]
        copy_BxTxV = jnp.zeros((B, T, V), jnp.float32).at[b, t, ids_BxS[:, None, :]].add(attn_BxTxS)
        p_BxTxV = gate_BxTx1 * jax.nn.softmax(vocab_logits_BxTxV.astype(jnp.float32), axis=-1) \
            + (1.0 - gate_BxTx1) * copy_BxTxV
        return jnp.log(p_BxTxV + _TINY)

    def _source(self, key_dense, encoded_BxSxE, source_BxS, source_segment_ids, decode: bool):
        """(keys, token ids, segment ids) of the source: computed, and cached while decoding."""
        if encoded_BxSxE is not None:
            B, S = source_BxS.shape
            seg = (jnp.ones((B, S), jnp.int32) if source_segment_ids is None
                   else jnp.asarray(source_segment_ids, jnp.int32))
            out = (key_dense(encoded_BxSxE), jnp.asarray(source_BxS, jnp.int32), seg)
            if decode:
                for name, value in zip(("copy_key", "copy_ids", "copy_segment_ids"), out):
                    self.variable("cache", name, jnp.zeros, value.shape, value.dtype).value = value
            return out
        if not self.has_variable("cache", "copy_key"):
            raise ValueError("copy attention while decoding needs the source on the first call")
        return tuple(self.get_variable("cache", n) for n in ("copy_key", "copy_ids", "copy_segment_ids"))
