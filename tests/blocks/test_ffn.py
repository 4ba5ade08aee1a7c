"""FeedForward relu/gelu/gelu_exact/swiglu against float64 numpy formulas."""
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.blocks.ffn import FeedForward


def gelu_tanh(x):
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def gelu_erf(x):
    return 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))


def _ffn_reference(kind, x, p):
    w = {k: (np.asarray(v["kernel"], np.float64), np.asarray(v["bias"], np.float64)) for k, v in p.items()}
    h = x.astype(np.float64) @ w["w1"][0] + w["w1"][1]
    if kind == "relu":
        h = np.maximum(0.0, h)
    elif kind == "gelu":
        h = gelu_tanh(h)
    elif kind == "gelu_exact":
        h = gelu_erf(h)
    else:
        h = h / (1 + np.exp(-h)) * (x @ w["w3"][0] + w["w3"][1])
    return h @ w["w2"][0] + w["w2"][1]


@pytest.mark.parametrize("kind", ["relu", "gelu", "gelu_exact", "swiglu"])
def test_ffn_formulas(kind):
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    mod = FeedForward(mlp_dim=16, kind=kind, init_std=0.5)
    p = mod.init(jax.random.key(0), x)["params"]
    assert p["w1"]["kernel"].names == ("embed", "mlp") and p["w2"]["kernel"].names == ("mlp", "embed")
    p = nn.unbox(p)
    want = _ffn_reference(kind, x, p)
    for fn in (mod.apply, jax.jit(mod.apply)):
        np.testing.assert_allclose(fn({"params": p}, x), want, atol=1e-5, rtol=1e-5)


def test_gelu_exact_is_not_the_tanh_approximation():
    """The two GELUs differ by far more than the formula test's tolerance, so that test tells
    them apart (a gelu_exact wired to the tanh form would fail it)."""
    x = np.random.default_rng(0).normal(size=(2, 3, 8)).astype(np.float32)
    mod = FeedForward(mlp_dim=16, kind="gelu_exact", init_std=0.5)
    p = nn.unbox(mod.init(jax.random.key(0), x)["params"])
    out = np.asarray(jax.jit(mod.apply)({"params": p}, x), np.float64)
    assert np.max(np.abs(out - _ffn_reference("gelu", x, p))) > 1e-4
    grid = np.linspace(-4, 4, 81)
    assert np.max(np.abs(gelu_erf(grid) - gelu_tanh(grid))) > 1e-4


def test_ffn_dropout_bf16_and_bad_kind():
    x = jnp.ones((1, 2, 8))
    mod = FeedForward(mlp_dim=16, dropout=0.5, dtype="bfloat16")
    p = mod.init(jax.random.key(0), x)["params"]
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p))
    a = mod.apply({"params": p}, x)
    b = mod.apply({"params": p}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert a.dtype == jnp.bfloat16 and not np.allclose(np.asarray(a, np.float32), np.asarray(b, np.float32))
    with pytest.raises(ValueError, match="ffn"):
        FeedForward(mlp_dim=4, kind="tanh").init(jax.random.key(0), x)
