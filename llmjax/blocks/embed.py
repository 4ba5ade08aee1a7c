"""Token embedding (VOCAB, EMBED), whose `attend` gives tied output logits (Press & Wolf), and
the untied output head. Both mask the padding rows of the table (ids >= the real vocabulary,
added so the table's size is a multiple of 64): their logits are NEG_LOGIT, so no softmax, loss,
argmax, sample or beam ever gives them probability.

Shape key: B batch, L length, E embed width, V (padded) vocabulary.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh

NEG_LOGIT = -1e9  # a padded id's logit: exactly 0 after softmax in float32, and still finite


def mask_padded_ids(logits_xV: jnp.ndarray, real_vocab_size: int) -> jnp.ndarray:
    """Logits with ids >= real_vocab_size set to NEG_LOGIT (real_vocab_size 0: every id is live)."""
    V = logits_xV.shape[-1]
    if not real_vocab_size or real_vocab_size >= V:
        return logits_xV
    return jnp.where(jnp.arange(V) < real_vocab_size, logits_xV, jnp.asarray(NEG_LOGIT, logits_xV.dtype))


class Embed(nn.Module):
    """Lookup in compute dtype; `attend(x)` = x @ E^T with float32 output for the loss."""

    vocab_size: int
    features: int
    init_std: float = 0.02
    dtype: str = "float32"
    real_vocab_size: int = 0  # the tokenizer's ids; attend masks the rows past it (0 = none padded)
    vocab_axis: str = sh.VOCAB  # logical name of the table's rows (BERT's two token types: TYPE_VOCAB)

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (self.vocab_axis, sh.EMBED)),
            (self.vocab_size, self.features), jnp.float32)

    def __call__(self, tokens_BxL: jnp.ndarray) -> jnp.ndarray:
        x_BxLxE = jnp.take(self.embedding, tokens_BxL, axis=0).astype(self.dtype)
        return nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

    def attend(self, x_BxLxE: jnp.ndarray) -> jnp.ndarray:
        """Logits against every token embedding: (B, L, V) float32, matmul in compute dtype."""
        table_VxE = self.embedding.astype(self.dtype)
        logits = jnp.einsum("ble,ve->blv", x_BxLxE.astype(self.dtype), table_VxE,
                            preferred_element_type=jnp.float32)
        logits = mask_padded_ids(logits, self.real_vocab_size)
        return nn.with_logical_constraint(logits, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))


class Unembed(nn.Module):
    """The untied output head: kernel (EMBED, VOCAB), no bias, float32 logits (padding masked)."""

    vocab_size: int
    init_std: float = 0.02
    dtype: str = "float32"
    real_vocab_size: int = 0  # the tokenizer's ids; logits past it are masked (0 = none padded)

    @nn.compact
    def __call__(self, x_BxLxE: jnp.ndarray) -> jnp.ndarray:
        kernel_ExV = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (sh.EMBED, sh.VOCAB)),
            (x_BxLxE.shape[-1], self.vocab_size), jnp.float32)
        logits = jnp.einsum("ble,ev->blv", x_BxLxE.astype(self.dtype), kernel_ExV.astype(self.dtype),
                            preferred_element_type=jnp.float32)
        logits = mask_padded_ids(logits, self.real_vocab_size)
        return nn.with_logical_constraint(logits, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))
