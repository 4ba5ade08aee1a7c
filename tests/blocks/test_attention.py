"""dot_product_attention and the Attention layer against a float64 numpy reference.

Shape key: B batch, L query length, S key length, H query heads, K kv heads, D head dim.
"""
import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.blocks.attention import Attention, dot_product_attention, make_attention_mask
from llmjax.blocks.positions import alibi_bias
from llmjax.blocks.attention import AttentionConfig


def ref_attention(q, k, v, mask_BxLxS=None, bias_BxHxLxS=None):
    """Naive float64 attention; K/V heads repeated for groups; fully masked rows -> 0."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    B, L, H, D = q.shape
    G = H // k.shape[2]
    k, v = np.repeat(k, G, axis=2), np.repeat(v, G, axis=2)
    logits = np.einsum("blhd,bshd->bhls", q, k) / np.sqrt(D)
    if bias_BxHxLxS is not None:
        logits = logits + np.asarray(bias_BxHxLxS, np.float64)
    mask = np.ones(logits.shape, bool) if mask_BxLxS is None else np.broadcast_to(
        np.asarray(mask_BxLxS)[:, None], logits.shape)
    logits = np.where(mask, logits, -np.inf)
    row_max = np.max(logits, axis=-1, keepdims=True)
    row_max = np.where(np.isfinite(row_max), row_max, 0.0)
    e = np.where(mask, np.exp(logits - row_max), 0.0)
    denom = e.sum(-1, keepdims=True)
    probs = np.divide(e, denom, out=np.zeros_like(e), where=denom > 0)
    return np.einsum("bhls,bshd->blhd", probs, v)


def ref_mask(L, S, causal, q_seg=None, kv_seg=None, q_offset=0):
    m = np.ones((1, L, S), bool)
    if causal:
        m = m & (np.arange(S)[None, :] <= np.arange(L)[:, None] + q_offset)[None]
    if kv_seg is not None:
        kv_seg = np.asarray(kv_seg)
        m = m & (kv_seg != 0)[:, None, :]
        if q_seg is not None:
            m = m & (np.asarray(q_seg)[:, :, None] == kv_seg[:, None, :])
    elif q_seg is not None:
        m = m & (np.asarray(q_seg) != 0)[:, :, None]
    return m


def qkv(B=2, L=6, S=6, H=4, K=4, D=8, seed=0):
    r = np.random.default_rng(seed)
    return (r.normal(size=(B, L, H, D)).astype(np.float32),
            r.normal(size=(B, S, K, D)).astype(np.float32),
            r.normal(size=(B, S, K, D)).astype(np.float32))


PAD_SEG = np.array([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]], np.int32)
PACKED_SEG = np.array([[1, 1, 2, 2, 2, 0], [1, 2, 2, 3, 3, 3]], np.int32)

CASES = {
    "causal": dict(causal=True),
    "bidirectional": dict(causal=False),
    "padding": dict(causal=False, q_segment_ids=PAD_SEG, kv_segment_ids=PAD_SEG),
    "causal_padding": dict(causal=True, q_segment_ids=PAD_SEG, kv_segment_ids=PAD_SEG),
    "packed": dict(causal=True, q_segment_ids=PACKED_SEG, kv_segment_ids=PACKED_SEG),
    "gqa": dict(causal=True, K=2),
    "mqa_packed": dict(causal=True, K=1, q_segment_ids=PACKED_SEG, kv_segment_ids=PACKED_SEG),
    "alibi": dict(causal=True, alibi=True),
    "alibi_gqa_packed": dict(causal=True, alibi=True, K=2, q_segment_ids=PACKED_SEG,
                             kv_segment_ids=PACKED_SEG),
    "offset": dict(causal=True, L=2, q_offset=3),  # decoding: 2 new queries after 3 cached keys
    "cross_padding": dict(causal=False, L=3, kv_segment_ids=PAD_SEG),
}


# Eager and jitted for our implementation; jax.nn's path jitted only (eager adds nothing there).
@pytest.mark.parametrize("backend,use_jit", [("xla", False), ("xla", True), ("jax", True)])
@pytest.mark.parametrize("case", list(CASES))
def test_matches_reference(case, backend, use_jit):
    c = dict(CASES[case])
    K, L, alibi = c.pop("K", 4), c.pop("L", 6), c.pop("alibi", False)
    q, k, v = qkv(L=L, K=K)
    bias = None
    if alibi:
        bias = alibi_bias(np.arange(L)[None] + c.get("q_offset", 0), np.arange(6)[None], 4)
    fn = lambda q, k, v, bias: dot_product_attention(q, k, v, bias=bias, backend=backend, **c)  # noqa
    out = (jax.jit(fn) if use_jit else fn)(q, k, v, bias)
    mask = ref_mask(L, 6, c["causal"], c.get("q_segment_ids"), c.get("kv_segment_ids"),
                    c.get("q_offset", 0))
    want = ref_attention(q, k, v, mask, None if bias is None else np.asarray(bias))
    assert out.shape == q.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, want, atol=2e-5, rtol=1e-5)
    assert np.all(np.isfinite(out))


def test_padding_queries_give_zeros_not_nan():
    q, k, v = qkv()
    for backend in ("xla", "jax"):
        out = dot_product_attention(q, k, v, causal=True, q_segment_ids=PAD_SEG,
                                    kv_segment_ids=PAD_SEG, backend=backend)
        assert np.all(np.asarray(out)[0, 4:] == 0.0)
        grads = jax.jit(jax.grad(lambda q: dot_product_attention(
            q, k, v, causal=True, q_segment_ids=PAD_SEG, kv_segment_ids=PAD_SEG,
            backend=backend).sum()))(q)
        assert np.all(np.isfinite(grads))


def test_traced_offset_under_jit():
    q, k, v = qkv(L=2)
    fn = jax.jit(lambda off: dot_product_attention(q, k, v, causal=True, q_offset=off))
    np.testing.assert_allclose(fn(jnp.int32(3)), ref_attention(q, k, v, ref_mask(2, 6, True, q_offset=3)),
                               atol=2e-5)


def test_mask_helper_none_when_unmasked():
    assert make_attention_mask(3, 3, causal=False) is None
    assert make_attention_mask(3, 4, causal=True).shape == (1, 1, 3, 4)


def test_bfloat16_close_to_float32():
    q, k, v = qkv(K=2)
    out = dot_product_attention(*(jnp.asarray(a, jnp.bfloat16) for a in (q, k, v)), causal=True)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32),
                               ref_attention(q, k, v, ref_mask(6, 6, True)), atol=5e-2)


def test_dropout_only_when_not_deterministic():
    q, k, v = qkv()
    kw = dict(causal=True, dropout_rate=0.5, dropout_rng=jax.random.key(0))
    a = dot_product_attention(q, k, v, deterministic=True, **kw)
    b = dot_product_attention(q, k, v, deterministic=False, **kw)
    np.testing.assert_allclose(a, ref_attention(q, k, v, ref_mask(6, 6, True)), atol=2e-5)
    assert not np.allclose(a, b)


def test_unknown_backend():
    q, k, v = qkv()
    with pytest.raises(ValueError, match="backend"):
        dot_product_attention(q, k, v, causal=True, backend="flash")


@pytest.mark.gpu
@pytest.mark.skipif(jax.default_backend() != "gpu", reason="cuDNN attention needs a GPU")
@pytest.mark.parametrize("case", ["causal", "packed", "gqa", "alibi", "padding"])
def test_cudnn_matches_reference(case):
    c = dict(CASES[case])
    K, alibi = c.pop("K", 4), c.pop("alibi", False)
    q, k, v = qkv(L=128, S=128, K=K, D=64, B=2)
    seg = {key: np.repeat(val, 128 // 6 + 1, axis=1)[:, :128] for key, val in c.items()
           if key.endswith("segment_ids")}
    c.update(seg)
    bias = alibi_bias(np.arange(128)[None], np.arange(128)[None], 4) if alibi else None
    bf = lambda a: jnp.asarray(a, jnp.bfloat16)  # noqa: E731
    out = dot_product_attention(bf(q), bf(k), bf(v), bias=bias, backend="cudnn", **c)
    mask = ref_mask(128, 128, c["causal"], c.get("q_segment_ids"), c.get("kv_segment_ids"))
    want = ref_attention(*(np.asarray(bf(a), np.float32) for a in (q, k, v)), mask,
                         None if bias is None else np.asarray(bias))
    np.testing.assert_allclose(np.asarray(out, np.float32), want, atol=3e-2)


# ---------------------------------------------------------------- the layer

CFG = AttentionConfig(num_heads=4, num_kv_heads=2, head_dim=8, position="learned")


def _layer(cfg=CFG, causal=True, x=None, **kw):
    x = np.random.default_rng(1).normal(size=(2, 6, 16)).astype(np.float32) if x is None else x
    layer = Attention(cfg, causal=causal)
    params = layer.init(jax.random.key(0), x, **kw)["params"]
    return layer, nn.unbox(params), x


def test_layer_matches_numpy():
    layer, p, x = _layer()
    out = layer.apply({"params": p}, x, segment_ids=PACKED_SEG)
    f = lambda w, b, y: np.einsum("ble,ehd->blhd", y, w) + b  # noqa: E731
    q, k, v = (f(p[n]["kernel"], p[n]["bias"], x) for n in ("query", "key", "value"))
    ctx = ref_attention(q, k, v, ref_mask(6, 6, True, PACKED_SEG, PACKED_SEG))
    want = np.einsum("blhd,hde->ble", ctx, p["out"]["kernel"]) + p["out"]["bias"]
    np.testing.assert_allclose(out, want, atol=2e-5)


def test_cross_attention_shapes_and_padding():
    cfg = dataclasses.replace(CFG, position="rope")
    x = np.ones((2, 3, 16), np.float32)
    src = np.random.default_rng(2).normal(size=(2, 6, 24)).astype(np.float32)
    layer = Attention(cfg, causal=False, cross=True)
    p = layer.init(jax.random.key(0), x, src)["params"]
    assert p["key"]["kernel"].value.shape == (24, 2, 8) and p["out"]["kernel"].value.shape == (4, 8, 16)
    a = layer.apply({"params": p}, x, src, kv_segment_ids=PAD_SEG)
    src2 = src.copy()
    src2[0, 4:] = 100.0  # padding keys of row 0 must not matter
    b = layer.apply({"params": p}, x, src2, kv_segment_ids=PAD_SEG)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_cross_attention_decoding_projects_the_source_once():
    """While decoding, the first call caches the source's keys and values; later calls read them
    (no source given) and equal attention onto the source itself."""
    x = np.random.default_rng(1).normal(size=(2, 3, 16)).astype(np.float32)
    src = np.random.default_rng(2).normal(size=(2, 6, 24)).astype(np.float32)
    layer = Attention(CFG, causal=False, cross=True)
    p = layer.init(jax.random.key(0), x, src)["params"]
    want = layer.apply({"params": p}, x, src, kv_segment_ids=PAD_SEG)
    cache = layer.init(jax.random.key(0), x[:, :1], src, kv_segment_ids=PAD_SEG, decode=True)["cache"]
    assert set(cache) == {"cross_key", "cross_value", "cross_segment_ids"}
    first, mutated = layer.apply({"params": p, "cache": cache}, x[:, :1], src, kv_segment_ids=PAD_SEG,
                                 decode=True, mutable=["cache"])
    np.testing.assert_allclose(first, want[:, :1], atol=1e-6)
    calls = []
    with nn.intercept_methods(lambda f, args, kw, ctx: calls.append(ctx.module.name) or f(*args, **kw)):
        later = layer.apply({"params": p, **mutated}, x[:, 1:], decode=True)
    np.testing.assert_allclose(later, want[:, 1:], atol=1e-6)
    assert "key" not in calls and "value" not in calls and "query" in calls
    with pytest.raises(ValueError, match="first decoding call must pass it"):
        layer.apply({"params": p}, x, decode=True, mutable=["cache"])


@pytest.mark.parametrize("position", ["learned", "rope", "alibi"])
def test_causality_gradient_exactly_zero(position):
    layer, p, x = _layer(dataclasses.replace(CFG, position=position))
    grad_t = jax.jit(jax.grad(lambda x, t: layer.apply({"params": p}, x)[:, t].sum()))
    for t in (0, 2, 4):
        g = grad_t(x, t)
        assert np.all(np.asarray(g)[:, t + 1:] == 0.0)
        assert np.any(np.asarray(g)[:, t] != 0.0)


def test_segment_isolation_gradient_exactly_zero():
    layer, p, x = _layer(causal=False)
    seg = np.array([[1, 1, 1, 2, 2, 2]] * 2, np.int32)
    g = jax.grad(lambda x: layer.apply({"params": p}, x, segment_ids=seg)[:, :3].sum())(x)
    assert np.all(np.asarray(g)[:, 3:] == 0.0) and np.any(np.asarray(g)[:, :3] != 0.0)


def test_layer_dropout_and_dtype():
    cfg = dataclasses.replace(CFG, dropout=0.5, dtype="bfloat16")
    layer, p, x = _layer(cfg)
    assert all(a.dtype == jnp.float32 for a in jax.tree_util.tree_leaves(p))
    a = layer.apply({"params": p}, x)
    b = layer.apply({"params": p}, x, deterministic=False, rngs={"dropout": jax.random.key(1)})
    assert a.dtype == jnp.bfloat16 and not np.allclose(np.asarray(a, np.float32), np.asarray(b, np.float32))


@pytest.mark.parametrize("backend", ["xla", "jax"])
@pytest.mark.parametrize("K", [4, 2])
def test_explicit_scale_is_the_score_multiplier(backend, K):
    """scale=s computes softmax(s q.k) V: the same as the default 1/sqrt(D) on q * s sqrt(D)
    (mup's 1/D scores ride on this)."""
    q, k, v = qkv(K=K)
    s = 1.0 / q.shape[-1]
    got = dot_product_attention(q, k, v, causal=True, backend=backend, scale=s)
    want = dot_product_attention(q * (s * np.sqrt(q.shape[-1])), k, v, causal=True, backend=backend)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-5)
    assert not np.allclose(got, dot_product_attention(q, k, v, causal=True, backend=backend), atol=1e-3)
