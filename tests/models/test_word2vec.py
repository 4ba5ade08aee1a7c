"""Word2Vec: the negative-sampling loss against a float64 NumPy reference on a tiny table
(skip-gram and CBOW), and the row-mean gradient of the lookups."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from llmjax.models import registry
from llmjax.models.word2vec import Word2VecConfig, take_rows
from llmjax.tasks.word2vec import negative_sampling_loss


def _log_sigmoid(x):
    return -np.log1p(np.exp(-x))


def _model(architecture: str):
    cfg = Word2VecConfig(architecture=architecture, dim=4, window=2, negatives=3).finalize(11, 0, "cpu", "float32")
    model = registry.build(cfg)
    rng = np.random.default_rng(0)
    params = {"input": {"embedding": jnp.asarray(rng.normal(size=(cfg.vocab_size, 4)), jnp.float32)},
              "output": {"embedding": jnp.asarray(rng.normal(size=(cfg.vocab_size, 4)), jnp.float32)}}
    return cfg, model, params


@pytest.mark.parametrize("architecture", ["skipgram", "cbow"])
def test_negative_sampling_loss_matches_a_float64_reference(architecture):
    cfg, model, params = _model(architecture)
    C = cfg.input_slots
    rng = np.random.default_rng(1)
    inputs = rng.integers(0, 11, size=(5, C)).astype(np.int32)
    mask = (rng.random((5, C)) < 0.7).astype(np.float32)
    mask[:, 0] = 1.0
    targets = rng.integers(0, 11, size=5).astype(np.int32)
    negatives = rng.integers(0, 11, size=(5, 3)).astype(np.int32)
    negatives[0, 1] = targets[0]  # a negative that is the true token: masked out
    candidates = np.concatenate([targets[:, None], negatives], axis=1)
    scores = model.apply({"params": params}, inputs, candidates, mask if C > 1 else None)
    loss = negative_sampling_loss(scores, (negatives != targets[:, None]).astype(np.float32))

    w_in = np.asarray(params["input"]["embedding"], np.float64)
    w_out = np.asarray(params["output"]["embedding"], np.float64)
    want = []
    for r in range(5):
        m = mask[r] if C > 1 else np.ones(1)
        h = (w_in[inputs[r]] * m[:, None]).sum(0) / m.sum()
        s = w_out[candidates[r]] @ h
        keep = negatives[r] != targets[r]
        want.append(-_log_sigmoid(s[0]) - np.sum(_log_sigmoid(-s[1:]) * keep))
    np.testing.assert_allclose(np.asarray(loss, np.float64), want, rtol=1e-5, atol=1e-5)


def test_the_tables_are_initialised_as_word2vec_does():
    cfg = Word2VecConfig(dim=8).finalize(20, 0, "cpu", "float32")
    boxed = registry.build(cfg).init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32),
                                     jnp.zeros((1, 6), jnp.int32))["params"]
    w_in = np.asarray(boxed["input"]["embedding"].value)
    assert w_in.shape == (24, 8) and np.abs(w_in).max() <= 0.5 / 8 and w_in.std() > 0
    assert not np.asarray(boxed["output"]["embedding"].value).any()


def test_a_rows_gradient_is_the_mean_of_its_occurrences():
    table = jnp.asarray(np.random.default_rng(0).normal(size=(5, 3)), jnp.float32)
    ids = jnp.asarray([[1, 1, 1], [2, 4, 1]], jnp.int32)
    g = np.random.default_rng(1).normal(size=(2, 3, 3)).astype(np.float32)
    grad = jax.grad(lambda t: jnp.sum(take_rows(t, ids) * g))(table)
    want = np.zeros((5, 3))
    flat_ids, flat_g = np.asarray(ids).reshape(-1), g.reshape(-1, 3)
    for v in range(5):
        if (flat_ids == v).any():
            want[v] = flat_g[flat_ids == v].mean(0)
    np.testing.assert_allclose(np.asarray(grad), want, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(take_rows(table, ids)), np.asarray(table)[np.asarray(ids)])


def test_bad_keys_are_one_line():
    from llmjax.config import ConfigError
    with pytest.raises(ConfigError, match="model.architecture"):
        dataclasses.replace(Word2VecConfig(), architecture="glove").validate()
    with pytest.raises(ConfigError, match="model.window"):
        Word2VecConfig(window=0).validate()


def test_take_rows_counts_a_lookup_as_its_occurrences():
    table = jnp.zeros((4, 2), jnp.float32)
    ids = jnp.asarray([1, 1, 3], jnp.int32)
    counts = jnp.asarray([1.0, 3.0, 2.0], jnp.float32)  # the second lookup stands for 3 occurrences
    g = np.asarray([[1.0, 0.0], [5.0, 4.0], [2.0, 2.0]], np.float32)
    grad = jax.grad(lambda t: jnp.sum(take_rows(t, ids, counts) * g))(table)
    np.testing.assert_allclose(np.asarray(grad), [[0, 0], [6 / 4, 4 / 4], [0, 0], [1, 1]], rtol=1e-6)


@pytest.mark.parametrize("architecture", ["skipgram", "cbow"])
def test_grouped_negatives_match_the_per_row_path_on_the_same_batch(architecture):
    """negative_group G scores a group's shared negatives by one matmul: the scores and both
    tables' gradients are the per-row path's on the same batch (its negatives repeated G times)."""
    cfg, model, params = _model(architecture)
    G, B, C = 4, 12, cfg.input_slots
    grouped = registry.build(dataclasses.replace(cfg, negative_group=G))
    rng = np.random.default_rng(2)
    inputs = rng.integers(0, 11, size=(B, C)).astype(np.int32)
    mask = (rng.random((B, C)) < 0.7).astype(np.float32)
    mask[:, 0] = 1.0
    targets = rng.integers(0, 11, size=B).astype(np.int32)
    negatives = np.repeat(rng.integers(0, 11, size=(B // G, 3)), G, axis=0).astype(np.int32)
    negatives[1, 0] = targets[1] = negatives[0, 0]  # a token both true and a group's negative
    candidates = np.concatenate([targets[:, None], negatives], axis=1)
    weights = rng.random((B, 3 + 1)).astype(np.float32)

    def loss(m, p):
        return jnp.sum(m.apply({"params": p}, inputs, candidates, mask if C > 1 else None) * weights)

    np.testing.assert_allclose(grouped.apply({"params": params}, inputs, candidates, mask if C > 1 else None),
                               model.apply({"params": params}, inputs, candidates, mask if C > 1 else None),
                               rtol=1e-5, atol=1e-6)
    want, got = jax.grad(lambda p: loss(model, p))(params), jax.grad(lambda p: loss(grouped, p))(params)
    for table in ("input", "output"):
        np.testing.assert_allclose(got[table]["embedding"], want[table]["embedding"], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="negative_group=4"):
        grouped.apply({"params": params}, inputs[:6], candidates[:6], mask[:6] if C > 1 else None)
