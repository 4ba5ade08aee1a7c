"""Token embedding (VOCAB, EMBED), whose `attend` gives tied output logits (Press & Wolf).

Shape key: B batch, L length, E embed width, V (padded) vocabulary.
"""
from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from llmjax import sharding as sh


class Embed(nn.Module):
    """Lookup in compute dtype; `attend(x)` = x @ E^T with float32 output for the loss."""

    vocab_size: int
    features: int
    init_std: float = 0.02
    dtype: str = "float32"

    def setup(self):
        self.embedding = self.param(
            "embedding",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (sh.VOCAB, sh.EMBED)),
            (self.vocab_size, self.features), jnp.float32)

    def __call__(self, tokens_BxL: jnp.ndarray) -> jnp.ndarray:
        x_BxLxE = jnp.take(self.embedding, tokens_BxL, axis=0).astype(self.dtype)
        return nn.with_logical_constraint(x_BxLxE, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))

    def attend(self, x_BxLxE: jnp.ndarray) -> jnp.ndarray:
        """Logits against every token embedding: (B, L, V) float32, matmul in compute dtype."""
        table_VxE = self.embedding.astype(self.dtype)
        logits = jnp.einsum("ble,ve->blv", x_BxLxE.astype(self.dtype), table_VxE,
                            preferred_element_type=jnp.float32)
        return nn.with_logical_constraint(logits, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))


class Unembed(nn.Module):
    """The untied output head: kernel (EMBED, VOCAB), no bias, float32 logits."""

    vocab_size: int
    init_std: float = 0.02
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x_BxLxE: jnp.ndarray) -> jnp.ndarray:
        kernel_ExV = self.param(
            "kernel",
            nn.with_logical_partitioning(nn.initializers.normal(self.init_std), (sh.EMBED, sh.VOCAB)),
            (x_BxLxE.shape[-1], self.vocab_size), jnp.float32)
        logits = jnp.einsum("ble,ev->blv", x_BxLxE.astype(self.dtype), kernel_ExV.astype(self.dtype),
                            preferred_element_type=jnp.float32)
        return nn.with_logical_constraint(logits, (sh.BATCH, sh.ACT_LENGTH, sh.ACT_VOCAB))
