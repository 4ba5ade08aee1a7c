"""LayerNorm and RMSNorm with float32 statistics whatever the compute dtype.

bfloat16 means and variances over a wide residual lose too many bits; the normalised output
is cast back to the compute dtype. Scales and biases are float32, logically NORM (replicated).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from llmjax import sharding as sh

NORMS = ("layernorm", "rmsnorm")


def _norm_param(module: nn.Module, name: str, init, features: int) -> jnp.ndarray:
    return module.param(name, nn.with_logical_partitioning(init, (sh.NORM,)), (features,), jnp.float32)


class LayerNorm(nn.Module):
    """(x - mean) / sqrt(var + eps) * scale + bias (Ba et al.; GPT-2 uses eps 1e-5)."""

    epsilon: float = 1e-5
    use_bias: bool = True
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.epsilon)
        y = y * _norm_param(self, "scale", nn.initializers.ones_init(), x.shape[-1])
        if self.use_bias:
            y = y + _norm_param(self, "bias", nn.initializers.zeros_init(), x.shape[-1])
        return y.astype(self.dtype)


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * scale (Zhang & Sennrich): no centring, no bias."""

    epsilon: float = 1e-6
    dtype: str = "float32"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        x32 = x.astype(jnp.float32)
        y = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.epsilon)
        y = y * _norm_param(self, "scale", nn.initializers.ones_init(), x.shape[-1])
        return y.astype(self.dtype)


def make_norm(kind: str, dtype: str = "float32", name: str | None = None,
              epsilon: float = 0.0) -> nn.Module:
    """The norm called `kind` ("layernorm" | "rmsnorm"); epsilon 0 = the norm's own default
    (LayerNorm 1e-5, RMSNorm 1e-6), so configs that never set it keep their numbers."""
    if epsilon < 0:
        raise ValueError(f"norm epsilon {epsilon!r} is negative: pass 0 (the default) or a positive value")
    eps = {} if epsilon == 0 else {"epsilon": epsilon}
    if kind == "layernorm":
        return LayerNorm(dtype=dtype, name=name, **eps)
    if kind == "rmsnorm":
        return RMSNorm(dtype=dtype, name=name, **eps)
    raise ValueError(f"norm {kind!r}: must be one of {', '.join(NORMS)}")
