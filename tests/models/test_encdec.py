"""The encoder-decoder: packed rows equal their examples alone, the decoder is causal, and the
generation protocol (prefill + extend on the cache) equals the uncached forward."""
import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.generation.decode import extend, generate, init_cache, prefill, prompt_mask
from llmjax.models.encdec import EncDecConfig
from llmjax.models.registry import build

CFG = EncDecConfig(vocab_size=64, num_layers=2, num_decoder_layers=3, d_model=128, num_heads=4, mlp_dim=256,
                   max_len=16, init_std=0.2, position="learned", start_id=1)
RNG = np.random.default_rng(0)
SRC = RNG.integers(2, 64, size=(2, 9)).astype(np.int32)
TGT = RNG.integers(2, 64, size=(2, 7)).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _model(**changes):
    model = build(dataclasses.replace(CFG, **changes))
    return model, nn.unbox(model.init(jax.random.key(0), SRC, TGT)["params"])


@functools.partial(jax.jit, static_argnums=0, static_argnames=("method",))
def _apply(model, variables, *args, method=None, **kw):
    """Jitted apply, cached per (hashable) model: eager dispatch makes small-model tests slow."""
    return model.apply(variables, *args, **kw) if method is None else model.apply(variables, *args, method=method, **kw)


def test_parameter_tree():
    _, p = _model()
    assert set(p) == {"embed", "encoder", "decoder"}  # one shared table, tied output
    assert {"layer_0", "layer_1", "pos_embed", "final_norm"} == set(p["encoder"])
    assert "cross_attn" in p["decoder"]["layer_2"] and "cross_attn" not in p["encoder"]["layer_0"]
    _, q = _model(share_embeddings=False, tie_embeddings=False)
    assert {"embed", "target_embed", "head"} <= set(q)


# Slow: ("learned", False), whose stacks and masks ("learned", True) runs with the copy head on top.
@pytest.mark.parametrize("position,copy", [pytest.param("learned", False, marks=pytest.mark.slow), ("learned", True),
                                           pytest.param("sinusoidal", False, marks=pytest.mark.slow),
                                           pytest.param("rope", False, marks=pytest.mark.slow)])
def test_packed_row_equals_each_example_alone(position, copy):
    """Two (source, target) pairs packed in one row, with segment and position ids, give each
    pair's logits alone: no example attends across another, in either stack or across (nor
    copies from another's source)."""
    model, p = _model(position=position, copy_attention=copy)
    s1, s2, t1, t2 = SRC[0, :5], SRC[1, :3], TGT[0, :4], TGT[1, :3]
    src = np.zeros((1, 10), np.int32)
    src[0, :8] = np.concatenate([s1, s2])
    src_seg = np.array([[1] * 5 + [2] * 3 + [0] * 2])
    src_pos = np.array([[0, 1, 2, 3, 4, 0, 1, 2, 0, 0]])
    tgt = np.zeros((1, 8), np.int32)
    tgt[0, :7] = np.concatenate([t1, t2])
    tgt_seg = np.array([[1] * 4 + [2] * 3 + [0]])
    tgt_pos = np.array([[0, 1, 2, 3, 0, 1, 2, 0]])
    packed = _apply(model, {"params": p}, src, tgt, source_segment_ids=src_seg, source_positions=src_pos,
                         target_segment_ids=tgt_seg, target_positions=tgt_pos)
    alone1 = _apply(model, {"params": p}, s1[None], t1[None])
    alone2 = _apply(model, {"params": p}, s2[None], t2[None])
    np.testing.assert_allclose(packed[0, :4], alone1[0], atol=2e-5)
    np.testing.assert_allclose(packed[0, 4:7], alone2[0], atol=2e-5)


def test_decoder_is_causal_and_reads_the_source():
    model, p = _model()
    # Changing target token t+1.. leaves logits up to t unchanged; changing the source changes them.
    a = _apply(model, {"params": p}, SRC, TGT)
    tgt2 = TGT.copy()
    tgt2[:, 4:] = (tgt2[:, 4:] + 7) % 64
    b = _apply(model, {"params": p}, SRC, tgt2)
    np.testing.assert_allclose(a[:, :4], b[:, :4], atol=1e-6)
    assert not np.allclose(a[:, 4:], b[:, 4:])
    src2 = SRC.copy()
    src2[:, -1] = (src2[:, -1] + 5) % 64
    assert not np.allclose(_apply(model, {"params": p}, src2, TGT)[:, 0], a[:, 0])


# Slow: dict(), the default model, which dict(copy_attention=True) runs with the copy head on top.
@pytest.mark.parametrize("changes", [pytest.param(dict(), marks=pytest.mark.slow),
                                     pytest.param(dict(position="rope", num_kv_heads=2, scan_layers=True),
                                                  marks=pytest.mark.slow),
                                     dict(norm_position="post", share_embeddings=False, tie_embeddings=False),
                                     dict(copy_attention=True)])
def test_cached_decoding_equals_the_uncached_forward(changes):
    """prefill (encoder once, start token) + extend on the cache equal score (one full forward)
    for left-padded sources of different lengths; each row equals its source alone."""
    model, p = _model(**changes)
    src = np.array([[0, 0, 0, 5, 9, 11], [7, 8, 9, 10, 11, 12]], np.int32)
    mask = prompt_mask(src, np.array([3, 6]))
    cont = TGT[:, :5]
    want = np.asarray(_apply(model, {"params": p}, src, mask, cont, method="score"))
    cache = init_cache(model, src.shape, 6)
    logits, cache = jax.jit(prefill, static_argnums=(0, 5))(model, p, cache, src, mask, 6)
    np.testing.assert_allclose(logits, want[:, 0], atol=2e-5)
    step = jax.jit(extend, static_argnums=0)
    for i in range(5):
        logits, cache = step(model, p, cache, jnp.asarray(cont[:, i]))
        np.testing.assert_allclose(logits, want[:, i + 1], atol=2e-5, err_msg=f"token {i}")
    alone = _apply(model, {"params": p}, src[:1, 3:], np.ones((1, 3), np.int32), cont[:1], method="score")
    np.testing.assert_allclose(alone[0], want[0], atol=2e-5)
    # score's first column is the plain forward on [start] + continuation.
    plain = _apply(model, {"params": p}, src[1:], np.concatenate([[[1]], cont[1:]], axis=1))
    np.testing.assert_allclose(plain[0], want[1], atol=2e-5)


def test_extend_never_reprojects_the_source():
    model, p = _model()
    src = SRC[:, :4]
    cache = init_cache(model, src.shape, 4)
    _, cache = prefill(model, p, cache, src, np.ones_like(src), 4)
    calls = []

    def spy(f, args, kwargs, ctx):
        calls.append("/".join(ctx.module.path))
        return f(*args, **kwargs)

    with nn.intercept_methods(spy):
        extend(model, p, cache, jnp.asarray(TGT[:, 0]))
    assert any(c.endswith("cross_attn/query") for c in calls)
    assert not any("cross_attn/key" in c or "cross_attn/value" in c or c.startswith("encoder") for c in calls)


# Slow: False, the default model, which True runs with the copy head on top.
@pytest.mark.parametrize("copy", [pytest.param(False, marks=pytest.mark.slow), True])
def test_generate_cached_equals_uncached_and_batch_equals_alone(copy):
    model, p = _model(init_std=0.5, copy_attention=copy)
    sources = [[5, 9, 11], [7, 8, 9, 10, 11, 12], [40]]
    kw = dict(max_new_tokens=6, rng=jax.random.key(0), temperature=0.0)
    out = generate(model, p, sources, **kw)
    assert len(np.unique(out)) > 3
    np.testing.assert_array_equal(generate(model, p, sources, use_cache=False, **kw), out)
    for s, row in zip(sources, out):
        np.testing.assert_array_equal(generate(model, p, [s], **kw)[0], row)


def test_flops_hand_count():
    cfg = dataclasses.replace(CFG, vocab_size=64)
    d, f, V = 128, 256, 64
    attn, ffn = 4 * d * d, 2 * d * f
    enc, dec = 2 * (attn + ffn), 3 * (2 * attn + ffn) + d * V
    assert cfg.matmul_params() == (enc, dec)
    S, T = 10, 6
    want = S * (6 * enc + 12 * 2 * d * S) + T * (6 * dec + 12 * 3 * d * (T + S))
    assert cfg.flops_per_row(S, T) == want
    copy = dataclasses.replace(cfg, copy_attention=True)
    assert copy.matmul_params() == (enc, dec + 2 * d * d + d)
    assert copy.flops_per_row(S, T) == want + T * 6 * (2 * d * d + d) + T * 6 * d * S


def test_copy_attention_puts_the_mass_the_gate_frees_on_source_tokens():
    """p = g softmax(vocab) + (1 - g) attention scattered onto source ids: with the gate shut
    (bias -> -inf) every probability sits on tokens of the row's source, and the attention
    weights of a token repeated in the source add up."""
    model, p = _model(copy_attention=True)
    p = jax.tree_util.tree_map(lambda x: x, p)  # a copy: _model's tree is cached
    p["copy"]["gate"]["bias"] = jnp.full_like(p["copy"]["gate"]["bias"], -1e4)
    src = np.array([[5, 9, 9, 11, 3]], np.int32)
    probs = np.exp(np.asarray(model.apply({"params": p}, src, TGT[:1])))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-4)
    np.testing.assert_allclose(probs[..., [3, 5, 9, 11]].sum(-1), 1.0, atol=1e-4)
    p["copy"]["gate"]["bias"] = jnp.full_like(p["copy"]["gate"]["bias"], 1e4)  # gate open: no copying
    plain, _ = _model()
    mixed = np.asarray(model.apply({"params": p}, src, TGT[:1]))
    alone = np.asarray(jax.nn.log_softmax(plain.apply({"params": {k: v for k, v in p.items() if k != "copy"}},
                                                      src, TGT[:1])))
    np.testing.assert_allclose(np.exp(mixed), np.exp(alone), atol=1e-6)  # log p is floored at 1e-9


def test_too_long_is_refused():
    model, p = _model()
    with pytest.raises(ValueError, match="max_len 16"):
        generate(model, p, [list(range(2, 20))], max_new_tokens=2, rng=jax.random.key(0))
