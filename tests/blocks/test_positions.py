"""Sinusoidal, learned, RoPE and ALiBi positions against their defining formulas; positions
while decoding."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from llmjax.blocks.positions import (LearnedPositions, alibi_bias, alibi_slopes, apply_rope,
                                     sinusoidal_embedding, sinusoidal_table, token_positions)


def test_sinusoidal_table_formula():
    L, d = 50, 16
    table = sinusoidal_table(L, d)
    want = np.zeros((L, d))
    for p in range(L):
        for i in range(d // 2):
            want[p, 2 * i] = np.sin(p / 10000 ** (2 * i / d))
            want[p, 2 * i + 1] = np.cos(p / 10000 ** (2 * i / d))
    np.testing.assert_allclose(table, want, atol=2e-5)
    np.testing.assert_allclose(jax.jit(sinusoidal_embedding, static_argnums=1)(np.array([[7, 3]]), d)[0],
                               want[[7, 3]], atol=2e-5)
    assert sinusoidal_table(4, 7).shape == (4, 7)


def test_learned_positions_lookup():
    mod = LearnedPositions(max_len=10, features=4)
    params = mod.init(jax.random.key(0), jnp.zeros((1, 3), jnp.int32))["params"]
    table = np.asarray(params["embedding"].value)
    assert table.shape == (10, 4) and params["embedding"].names == ("length", "embed")
    out = mod.apply({"params": params}, np.array([[9, 0, 4]]))
    np.testing.assert_array_equal(out[0], table[[9, 0, 4]])


def _rope_scores(q, k, pq, pk):
    rq = apply_rope(q, np.full((1, q.shape[1]), pq), 10000.0)
    rk = apply_rope(k, np.full((1, k.shape[1]), pk), 10000.0)
    return np.einsum("blhd,blhd->blh", np.asarray(rq, np.float64), np.asarray(rk, np.float64))


def test_rope_scores_depend_on_relative_position_only():
    r = np.random.default_rng(0)
    q, k = r.normal(size=(2, 1, 1, 3, 8)).astype(np.float32)
    base = _rope_scores(q, k, 5, 2)
    for shift in (1, 17, 100):
        np.testing.assert_allclose(_rope_scores(q, k, 5 + shift, 2 + shift), base, rtol=1e-4, atol=1e-4)
    assert not np.allclose(_rope_scores(q, k, 6, 2), base, atol=1e-3)


def test_rope_rotation_formula_and_norm():
    r = np.random.default_rng(1)
    x = r.normal(size=(1, 4, 2, 6)).astype(np.float32)
    pos = np.array([[0, 1, 2, 9]])
    out = np.asarray(jax.jit(apply_rope)(x, pos, 10000.0), np.float64)
    np.testing.assert_allclose(out[:, 0], x[:, 0], atol=1e-6)  # position 0: identity
    np.testing.assert_allclose(np.linalg.norm(out, axis=-1), np.linalg.norm(x, axis=-1), rtol=1e-5)
    theta = 9 * 10000.0 ** (-np.arange(3) * 2 / 6)  # pair (i, i + 3) at position 9
    x1, x2 = x[0, 3, :, :3], x[0, 3, :, 3:]
    np.testing.assert_allclose(out[0, 3, :, :3], x1 * np.cos(theta) - x2 * np.sin(theta), atol=1e-5)
    np.testing.assert_allclose(out[0, 3, :, 3:], x2 * np.cos(theta) + x1 * np.sin(theta), atol=1e-5)


def test_alibi_slopes_paper():
    np.testing.assert_allclose(alibi_slopes(8), [2.0 ** -(i + 1) for i in range(8)])
    # 6 heads: the 4-head slopes, then every other slope of the 8-head set.
    np.testing.assert_allclose(alibi_slopes(6), [2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3])
    np.testing.assert_allclose(alibi_slopes(1), [2.0 ** -8])
    assert len(alibi_slopes(12)) == 12


def test_alibi_bias_values():
    b = np.asarray(alibi_bias(np.array([[3, 4]]), np.arange(5)[None], 2))
    assert b.shape == (1, 2, 2, 5)
    slopes = alibi_slopes(2)
    want = -slopes[:, None, None] * np.abs(np.array([3, 4])[:, None] - np.arange(5)[None])
    np.testing.assert_allclose(b[0], want, atol=1e-6)


def test_token_positions_continue_per_row_while_decoding():
    """GPT's and the encoder-decoder's positions: 0..L-1 by default; while decoding each row
    continues from the cache, given positions (left-padded prompts) set where each row stands."""
    class Model(nn.Module):
        @nn.compact
        def __call__(self, x_BxL, positions=None, decode=False):
            return token_positions(self, positions, *x_BxL.shape, decode)

    model, x = Model(), jnp.zeros((2, 3), jnp.int32)
    np.testing.assert_array_equal(model.apply({}, x), [[0, 1, 2]] * 2)
    cache = model.init(jax.random.key(0), jnp.zeros((2, 8), jnp.int32), decode=True)["cache"]
    np.testing.assert_array_equal(cache["next_position"], [0, 0])  # init writes nothing
    prompt = jnp.array([[0, 0, 1], [0, 1, 2]])  # row 0 has one padding slot more
    out, v = model.apply({"cache": cache}, x, positions=prompt, decode=True, mutable=["cache"])
    np.testing.assert_array_equal(out, prompt)
    out, v = model.apply(v, x[:, :2], decode=True, mutable=["cache"])
    np.testing.assert_array_equal(out, [[2, 3], [3, 4]])
    np.testing.assert_array_equal(v["cache"]["next_position"], [4, 5])
