"""The position-wise feed-forward block: relu (Vaswani), gelu (tanh-approximate, GPT-2),
gelu_exact (erf GELU, BERT / Hugging Face "gelu"), swiglu (Shazeer; LLaMA).

Kernels are (EMBED, MLP) in and (MLP, EMBED) out so tensor parallelism splits the hidden width.
Parameter names follow the formulas: w1 (in), w3 (swiglu's linear gate), w2 (out).

Shape key: B batch, L length, E embed width, M hidden (mlp) width.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh

FFNS = ("relu", "gelu", "gelu_exact", "swiglu")


def _dense(features: int, names: tuple[str, str], std: float, use_bias: bool, dtype: str, name: str):
    return nn.Dense(
        features, use_bias=use_bias, dtype=dtype, param_dtype=jnp.float32,
        kernel_init=nn.with_logical_partitioning(nn.initializers.normal(std), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-1:]),
        name=name)


class FeedForward(nn.Module):
    """relu: W2 max(0, W1 x + b1) + b2; gelu: same with tanh-approximate GELU; gelu_exact: same
    with x Phi(x) (erf; the two differ by up to ~1e-3, enough to break parity with BERT
    checkpoints); swiglu: W2 (silu(W1 x) * W3 x).

    `dropout` acts on the hidden activation (T5-style; GPT-2 has none there, the layer's
    residual dropout covers the output). The output init std is divided by sqrt(2 * num_layers)
    (GPT-2's scaling of residual projections)."""

    mlp_dim: int
    kind: str = "gelu"
    use_bias: bool = True
    dropout: float = 0.0
    dtype: str = "float32"
    init_std: float = 0.02
    num_layers: int = 1

    @nn.compact
    def __call__(self, x_BxLxE: jnp.ndarray, *, deterministic: bool = True) -> jnp.ndarray:
        if self.kind not in FFNS:
            raise ValueError(f"ffn {self.kind!r}: must be one of {', '.join(FFNS)}")
        *lead, E = x_BxLxE.shape
        # The matmuls run on rows (B*L, E): XLA:CPU turns the weight gradient of a 3-D dot
        # (contracting batch and length) into a slow transposing copy of the hidden activation;
        # as 2-D dots the whole step is 1.25x faster (shakespeare_char, 2-core CPU). The
        # reshapes are bitcasts, and rows stay batch-major.
        x_TxE = x_BxLxE.reshape(-1, E)
        h_TxM = _dense(self.mlp_dim, (sh.EMBED, sh.MLP), self.init_std, self.use_bias,
                       self.dtype, "w1")(x_TxE)
        if self.kind == "relu":
            h_TxM = jax.nn.relu(h_TxM)
        elif self.kind in ("gelu", "gelu_exact"):
            h_TxM = jax.nn.gelu(h_TxM, approximate=self.kind == "gelu")
        else:
            gate_TxM = _dense(self.mlp_dim, (sh.EMBED, sh.MLP), self.init_std, self.use_bias,
                              self.dtype, "w3")(x_TxE)
            h_TxM = jax.nn.silu(h_TxM) * gate_TxM
        h_BxLxM = nn.with_logical_constraint(h_TxM.reshape(*lead, self.mlp_dim),
                                             (sh.BATCH, sh.ACT_LENGTH, sh.ACT_MLP))
        h_BxLxM = nn.Dropout(self.dropout)(h_BxLxM, deterministic=deterministic)
        out_std = self.init_std / math.sqrt(2 * self.num_layers)
        out_TxE = _dense(E, (sh.MLP, sh.EMBED), out_std, self.use_bias, self.dtype, "w2")(
            h_BxLxM.reshape(-1, self.mlp_dim))
        return nn.with_logical_constraint(out_TxE.reshape(*lead, E), (sh.BATCH, sh.ACT_LENGTH, sh.ACT_EMBED))
