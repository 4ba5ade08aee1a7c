"""TransformerLayer: pre/post norm ordering composed from its own sublayers, cross-attention."""
import dataclasses

import flax.linen as nn
import jax
import numpy as np
import pytest

from llmjax.blocks.attention import Attention
from llmjax.blocks.ffn import FeedForward
from llmjax.blocks.norms import LayerNorm, RMSNorm, make_norm
from llmjax.blocks.transformer import TransformerLayer
from llmjax.models.gpt import GPT, GPTConfig

CFG = GPTConfig(vocab_size=16, num_layers=2, d_model=16, num_heads=4, num_kv_heads=2, mlp_dim=32,
                  max_len=8, init_std=0.3)


def _parts(cfg, p):
    attn = lambda h, name="attn", **kw: Attention(cfg.attention(), causal=name == "attn", cross=name == "cross_attn").apply(  # noqa
        {"params": p[name]}, h, **kw)
    ffn = lambda h: FeedForward(mlp_dim=cfg.mlp_dim, kind=cfg.ffn).apply({"params": p["ffn"]}, h)  # noqa
    norm = lambda name, h: make_norm(cfg.norm).apply({"params": p[name]}, h)  # noqa
    return attn, ffn, norm


@pytest.mark.parametrize("norm_position", ["pre", "post"])
def test_norm_ordering(norm_position):
    cfg = dataclasses.replace(CFG, norm_position=norm_position, norm="rmsnorm", ffn="swiglu")
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
    layer = TransformerLayer(cfg)
    p = nn.unbox(layer.init(jax.random.key(0), x)["params"])
    attn, ffn, norm = _parts(cfg, p)
    if norm_position == "pre":
        h = x + attn(norm("attn_norm", x))
        want = h + ffn(norm("ffn_norm", h))
    else:
        h = norm("attn_norm", x + attn(x))
        want = norm("ffn_norm", h + ffn(h))
    np.testing.assert_allclose(layer.apply({"params": p}, x), want, atol=1e-5)
    np.testing.assert_allclose(jax.jit(layer.apply)({"params": p}, x), want, atol=1e-5)


def test_cross_attention_layer():
    cfg = CFG
    x = np.random.default_rng(0).normal(size=(2, 5, 16)).astype(np.float32)
    enc = np.random.default_rng(1).normal(size=(2, 7, 16)).astype(np.float32)
    enc_seg = np.array([[1] * 7, [1] * 4 + [0] * 3], np.int32)
    layer = TransformerLayer(cfg, causal=True, cross_attention=True)
    p = nn.unbox(layer.init(jax.random.key(0), x, encoded_BxSxE=enc)["params"])
    assert set(p) == {"attn", "attn_norm", "cross_attn", "cross_norm", "ffn", "ffn_norm"}
    out = layer.apply({"params": p}, x, encoded_BxSxE=enc, encoded_segment_ids=enc_seg)
    attn, ffn, norm = _parts(cfg, p)
    h = x + attn(norm("attn_norm", x))
    h = h + attn(norm("cross_norm", h), "cross_attn", kv_BxSxE=enc, kv_segment_ids=enc_seg)
    want = h + ffn(norm("ffn_norm", h))
    np.testing.assert_allclose(out, want, atol=1e-5)
    with pytest.raises(ValueError, match="encoder output"):
        layer.apply({"params": p}, x)


def test_residual_dropout_only_when_not_deterministic():
    cfg = dataclasses.replace(CFG, dropout=0.5)
    x = np.random.default_rng(0).normal(size=(1, 4, 16)).astype(np.float32)
    layer = TransformerLayer(cfg)
    p = layer.init(jax.random.key(0), x)["params"]
    a = layer.apply({"params": p}, x)
    b = TransformerLayer(cfg, deterministic=False).apply({"params": p}, x, rngs={"dropout": jax.random.key(1)})
    np.testing.assert_allclose(a, layer.apply({"params": p}, x))
    assert not np.allclose(a, b)


def _norm_epsilons(module, variables_or_rng, *args, init=False, **kw):
    """Every norm the module calls, as (path, epsilon), recorded while it runs."""
    seen = []

    def record(next_fun, args_, kwargs_, context):
        if isinstance(context.module, (LayerNorm, RMSNorm)) and context.method_name == "__call__":
            seen.append(("/".join(context.module.path), context.module.epsilon))
        return next_fun(*args_, **kwargs_)

    with nn.intercept_methods(record):
        (module.init if init else module.apply)(variables_or_rng, *args, **kw)
    return seen


@pytest.mark.parametrize("norm", ["layernorm", "rmsnorm"])
def test_norm_epsilon_reaches_every_norm(norm):
    """config.model.norm_epsilon reaches each norm of the stack (layer and cross norms, GPT's
    final norm); 0 leaves each norm its own default."""
    x = np.random.default_rng(0).normal(size=(1, 4, 16)).astype(np.float32)
    cfg = dataclasses.replace(CFG, norm=norm, norm_epsilon=1e-12)
    seen = _norm_epsilons(TransformerLayer(cfg, cross_attention=True), jax.random.key(0), x,
                          init=True, encoded_BxSxE=x)
    assert sorted(p.split("/")[-1] for p, _ in seen) == ["attn_norm", "cross_norm", "ffn_norm"]
    assert {e for _, e in seen} == {1e-12}
    tokens = np.zeros((1, 4), np.int32)
    seen = _norm_epsilons(GPT(cfg), jax.random.key(0), tokens, init=True)
    assert len(seen) == 2 * cfg.num_layers + 1 and {e for _, e in seen} == {1e-12}
    default = 1e-5 if norm == "layernorm" else 1e-6
    seen = _norm_epsilons(GPT(dataclasses.replace(cfg, norm_epsilon=0.0)), jax.random.key(0), tokens, init=True)
    assert len(seen) == 2 * cfg.num_layers + 1 and {e for _, e in seen} == {default}
