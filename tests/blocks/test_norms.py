"""LayerNorm / RMSNorm against numpy; statistics stay float32 under bfloat16."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.blocks.norms import make_norm


def _params(p, scale, bias):
    out = {"scale": scale}
    if "bias" in p:
        out["bias"] = bias
    return out


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_norm_formula(kind):
    r = np.random.default_rng(0)
    x = (r.normal(size=(2, 3, 16)) * 3 + 1).astype(np.float32)
    mod = make_norm(kind)
    p = mod.init(jax.random.key(0), x)["params"]
    assert p["scale"].names == ("norm",)
    scale, bias = r.normal(size=16).astype(np.float32), r.normal(size=16).astype(np.float32)
    params = _params(p, scale, bias)
    x64 = x.astype(np.float64)
    if kind == "layernorm":
        want = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5) * scale + bias
    else:
        want = x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + 1e-6) * scale
    for fn in (mod.apply, jax.jit(mod.apply)):
        np.testing.assert_allclose(fn({"params": params}, x), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_bfloat16_stats_in_float32(kind):
    # A large common offset: bfloat16 statistics would lose the small deviations entirely.
    x = (256.0 + np.arange(8, dtype=np.float32) / 4)[None]
    mod = make_norm(kind, "bfloat16")
    p = mod.init(jax.random.key(0), x)["params"]
    out = mod.apply({"params": p}, jnp.asarray(x))
    assert out.dtype == jnp.bfloat16 and p["scale"].value.dtype == jnp.float32
    x64 = x.astype(np.float64)
    if kind == "layernorm":
        want = (x64 - x64.mean()) / np.sqrt(x64.var() + 1e-5)
    else:
        want = x64 / np.sqrt((x64 ** 2).mean() + 1e-6)
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=2e-2)


@pytest.mark.parametrize("kind", ["layernorm", "rmsnorm"])
def test_epsilon_reaches_the_norm(kind):
    """Tiny-variance input: the output depends on epsilon (1e-12 vs 1e-5 vs the default) and
    matches float64 with that epsilon; epsilon 0 is the norm's own default exactly."""
    r = np.random.default_rng(1)
    centre = 1.0 if kind == "layernorm" else 0.0  # rmsnorm: tiny mean square instead
    x = (centre + 1e-3 * r.normal(size=(2, 3, 16))).astype(np.float32)
    x64 = x.astype(np.float64)

    def reference(eps):
        if kind == "layernorm":
            return (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + eps)
        return x64 / np.sqrt((x64 ** 2).mean(-1, keepdims=True) + eps)

    outs = {}
    for eps in (0.0, 1e-5, 1e-12):
        mod = make_norm(kind, epsilon=eps)
        p = mod.init(jax.random.key(0), x)
        outs[eps] = np.asarray(jax.jit(mod.apply)(p, x), np.float64)
    default = 1e-5 if kind == "layernorm" else 1e-6
    # float32 statistics of a (1 + 1e-3 noise) input keep ~4 significant digits of the variance
    np.testing.assert_allclose(outs[1e-12], reference(1e-12), atol=2e-3, rtol=2e-3)
    np.testing.assert_allclose(outs[1e-5], reference(1e-5), atol=2e-3, rtol=2e-3)
    np.testing.assert_array_equal(outs[0.0], np.asarray(jax.jit(make_norm(kind).apply)(p, x), np.float64))
    np.testing.assert_allclose(outs[0.0], reference(default), atol=2e-3, rtol=2e-3)
    assert np.max(np.abs(outs[1e-12] - outs[1e-5])) > 0.1


def test_unknown_norm_and_negative_epsilon():
    with pytest.raises(ValueError, match="norm"):
        make_norm("batchnorm")
    with pytest.raises(ValueError, match="epsilon"):
        make_norm("layernorm", epsilon=-1.0)
