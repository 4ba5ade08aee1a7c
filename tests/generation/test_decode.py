"""KV-cache decoding equals the full forward; sampling filters; generate vs a naive loop."""
import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.models.gpt import GPTConfig
from llmjax.generation.decode import (extend, filter_logits, generate, init_cache, left_pad, prefill,
                                      prompt_mask, sample_token)
from llmjax.models.registry import build

CFG = GPTConfig(vocab_size=32, num_layers=2, d_model=16, num_heads=4, num_kv_heads=4, mlp_dim=32,
                  max_len=16, init_std=0.3)
TOKENS = np.random.default_rng(0).integers(1, 32, size=(2, 12)).astype(np.int32)


@functools.lru_cache(maxsize=None)
def _model(**changes):
    model = build(dataclasses.replace(CFG, **changes))
    return model, model.init(jax.random.key(0), TOKENS[:, :4])["params"]


@functools.partial(jax.jit, static_argnums=0)
def _forward(model, params, tokens):
    return model.apply({"params": params}, tokens)


@functools.partial(jax.jit, static_argnums=0)
def _step(model, params, cache, tokens):
    """Feed a chunk of tokens onto the raw KV cache (positions continue from what is cached)."""
    logits, mutated = model.apply({"params": params, "cache": cache}, tokens, decode=True, mutable=["cache"])
    return logits[:, -1], mutated["cache"]


def _raw_cache(model, batch, length):
    shapes = jax.eval_shape(functools.partial(model.init, decode=True), jax.random.key(0),
                            jnp.zeros((batch, length), jnp.int32))
    return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


@pytest.mark.parametrize("changes", [
    dict(position="learned"),
    dict(position="rope", num_kv_heads=2),
    dict(position="alibi", num_kv_heads=1, norm="rmsnorm", ffn="swiglu"),
    dict(position="sinusoidal", dtype="bfloat16", remat="full"),
])
def test_cache_decode_equals_full_forward(changes):
    model, params = _model(**changes)
    full = np.asarray(_forward(model, params, TOKENS))
    tol = 5e-2 if changes.get("dtype") == "bfloat16" else 1e-5
    cache = _raw_cache(model, 2, 12)
    # Prefill 5 tokens at once (last-position logits), then a chunk of 2, then one at a time.
    logits, cache = _step(model, params, cache, TOKENS[:, :5])
    np.testing.assert_allclose(logits, full[:, 4], atol=tol)
    logits, cache = _step(model, params, cache, TOKENS[:, 5:7])
    np.testing.assert_allclose(logits, full[:, 6], atol=tol)
    for t in range(7, 12):
        logits, cache = _step(model, params, cache, TOKENS[:, t:t + 1])
        np.testing.assert_allclose(logits, full[:, t], atol=tol, err_msg=f"position {t}")


def test_prefill_extend_equal_score_on_left_padded_prompts():
    """The generation protocol: prefill + extend on the cache give the logits of one uncached
    forward (score), row by row, for prompts of different lengths."""
    model, params = _model(position="rope", num_kv_heads=2)
    prompt = np.array([[0, 0, 3, 9], [5, 6, 7, 8]], np.int32)
    mask = prompt_mask(prompt, np.array([2, 4]))
    cont = TOKENS[:, 4:9]
    want = np.asarray(model.apply({"params": params}, prompt, mask, cont, method="score"))
    cache = init_cache(model, prompt.shape, 5)
    logits, cache = jax.jit(prefill, static_argnums=(0, 5))(model, params, cache, prompt, mask, 5)
    np.testing.assert_allclose(logits, want[:, 0], atol=1e-5)
    step = jax.jit(extend, static_argnums=0)
    for i in range(5):
        logits, cache = step(model, params, cache, jnp.asarray(cont[:, i]))
        np.testing.assert_allclose(logits, want[:, i + 1], atol=1e-5, err_msg=f"token {i}")
    # Row 0 alone (no padding) scores the same.
    alone = model.apply({"params": params}, prompt[:1, 2:], np.ones((1, 2), np.int32), cont[:1], method="score")
    np.testing.assert_allclose(alone[0], want[0], atol=1e-5)


def _naive_greedy(model, params, prompt, n):
    """Argmax loop over full forwards on a fixed-size buffer (causal: the tail never matters)."""
    buf = np.zeros((prompt.shape[0], prompt.shape[1] + n), np.int32)
    buf[:, :prompt.shape[1]] = prompt
    for t in range(prompt.shape[1], buf.shape[1]):
        buf[:, t] = np.argmax(np.asarray(_forward(model, params, buf))[:, t - 1], axis=-1)
    return buf[:, prompt.shape[1]:]


GREEDY = dict(position="rope", num_kv_heads=2, tie_embeddings=False, init_std=0.5)  # not degenerate


def test_greedy_equals_naive_loop_and_top_k_1():
    model, params = _model(**GREEDY)
    prompt = TOKENS[:, :4]
    want = _naive_greedy(model, params, prompt, 8)
    assert len(np.unique(want)) > 2  # a non-degenerate continuation
    greedy = generate(model, params, prompt, max_new_tokens=8, rng=jax.random.key(0), temperature=0.0)
    np.testing.assert_array_equal(greedy, want)
    top1 = generate(model, params, prompt, max_new_tokens=8, rng=jax.random.key(5), top_k=1)
    np.testing.assert_array_equal(top1, want)


def test_cached_and_uncached_sampling_give_the_same_tokens():
    model, params = _model(**GREEDY)
    kw = dict(max_new_tokens=8, rng=jax.random.key(3), temperature=1.0, top_k=20)
    cached = generate(model, params, [[3, 4, 5], [9]], **kw)
    assert len(np.unique(cached)) > 4
    np.testing.assert_array_equal(generate(model, params, [[3, 4, 5], [9]], use_cache=False, **kw), cached)


def test_eos_then_only_eos():
    model, params = _model(**GREEDY)
    prompt = TOKENS[:, :4]
    greedy = generate(model, params, prompt, max_new_tokens=8, rng=jax.random.key(0), temperature=0.0)
    eos = int(greedy[0, 1])
    out = generate(model, params, prompt, max_new_tokens=8, rng=jax.random.key(0), temperature=0.0,
                   eos_id=eos)
    for row_out, row_greedy in zip(out, greedy):
        hits = np.flatnonzero(row_greedy == eos)
        stop = hits[0] + 1 if len(hits) else len(row_greedy)
        np.testing.assert_array_equal(row_out[:stop], row_greedy[:stop])
        assert np.all(row_out[stop:] == eos)


def test_sampling_is_seeded_and_length_checked():
    model, params = _model()
    a = generate(model, params, TOKENS[:, :4], max_new_tokens=6, rng=jax.random.key(1))
    b = generate(model, params, TOKENS[:, :4], max_new_tokens=6, rng=jax.random.key(1))
    assert a.shape == (2, 6) and a.dtype == np.int32
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="exceeds the model's max_len 16"):
        generate(model, params, TOKENS[:, :10], max_new_tokens=7, rng=jax.random.key(0))


def test_top_k_never_samples_outside():
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(1, 20)), jnp.float32)
    top3 = set(np.argsort(-np.asarray(logits[0]))[:3])
    draws = jax.jit(jax.vmap(lambda r: sample_token(logits, r, top_k=3)[0]))(
        jax.random.split(jax.random.key(0), 4000))
    assert set(np.asarray(draws).tolist()) == top3


def test_top_p_keeps_exactly_the_nucleus():
    probs = np.array([[0.05, 0.5, 0.15, 0.3], [0.25, 0.25, 0.4, 0.1]])
    logits = jnp.log(jnp.asarray(probs, jnp.float32))
    kept = np.isfinite(np.asarray(filter_logits(logits, top_p=0.75)))
    # Row 0: 0.5 + 0.3 reaches 0.75 -> {1, 3}. Row 1: 0.4 + 0.25 = 0.65 < 0.75 -> one more 0.25.
    np.testing.assert_array_equal(kept[0], [False, True, False, True])
    assert kept[1].sum() == 3 and kept[1][2] and not kept[1][3]
    np.testing.assert_array_equal(np.isfinite(np.asarray(filter_logits(logits, top_p=0.85)))[0],
                                  [False, True, True, True])
    assert np.isfinite(np.asarray(filter_logits(logits, top_p=0.01))).sum(-1).tolist() == [1, 1]
    draws = jax.jit(jax.vmap(lambda r: sample_token(logits, r, top_p=0.75)))(
        jax.random.split(jax.random.key(0), 2000))
    assert set(np.asarray(draws[:, 0]).tolist()) == {1, 3}


RAGGED = GPTConfig(vocab_size=64, num_layers=2, d_model=128, num_heads=4, num_kv_heads=4, mlp_dim=256,
                     max_len=32, init_std=0.5, tie_embeddings=False)
RAGGED_PROMPTS = [[5, 9, 2], [7, 1, 3, 3, 8, 12, 40], [33], [4, 4, 17, 60, 2]]


@pytest.mark.parametrize("changes", [dict(position="learned"),
                                     pytest.param(dict(position="rope", num_kv_heads=2), marks=pytest.mark.slow)])
def test_ragged_batch_equals_each_prompt_alone(changes):
    model = build(dataclasses.replace(RAGGED, **changes))
    params = model.init(jax.random.key(1), TOKENS[:, :4])["params"]
    greedy = functools.partial(generate, model, params, max_new_tokens=8, rng=jax.random.key(0),
                               temperature=0.0)
    alone = np.concatenate([greedy([p]) for p in RAGGED_PROMPTS])
    assert len(np.unique(alone)) > 4  # non-degenerate continuations
    np.testing.assert_array_equal(greedy(RAGGED_PROMPTS), alone)
    # The same prompts as a right-padded array with their lengths.
    padded = np.full((4, 7), 63, np.int32)
    for row, p in zip(padded, RAGGED_PROMPTS):
        row[:len(p)] = p
    np.testing.assert_array_equal(greedy(padded, lengths=[len(p) for p in RAGGED_PROMPTS]), alone)
    # Each alone is the plain (unpadded) greedy continuation.
    for p, row in zip(RAGGED_PROMPTS, alone):
        np.testing.assert_array_equal(row, _naive_greedy(model, params, np.asarray([p], np.int32), 8)[0])


def test_left_pad_to_a_fixed_width():
    tokens, lengths = left_pad([[5, 9], [7]], pad_to=4)
    np.testing.assert_array_equal(tokens, [[0, 0, 5, 9], [0, 0, 0, 7]])
    np.testing.assert_array_equal(lengths, [2, 1])
    assert left_pad([[5, 9, 2]], pad_to=2)[0].tolist() == [[5, 9, 2]]  # never cut: at least pad_to


def test_bad_ragged_prompts_are_refused():
    model, params = _model()
    with pytest.raises(ValueError, match="prompt 1 is empty"):
        generate(model, params, [[1, 2], []], max_new_tokens=2, rng=jax.random.key(0))
    with pytest.raises(ValueError, match="lengths"):
        generate(model, params, TOKENS[:, :4], lengths=[5, 2], max_new_tokens=2, rng=jax.random.key(0))
