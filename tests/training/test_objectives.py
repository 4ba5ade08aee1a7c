"""Cross-entropy sums against a float64 numpy reference, with weights and z-loss."""
import jax
import jax.numpy as jnp
import numpy as np
import optax

from llmjax.training.objectives import cross_entropy_sums, token_nll


def test_cross_entropy_matches_numpy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(2, 5))
    weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
    out = cross_entropy_sums(logits, targets, weights, z_loss=1e-2)
    l64 = logits.astype(np.float64)
    log_z = np.log(np.exp(l64).sum(-1))
    nll = log_z - np.take_along_axis(l64, targets[..., None], -1)[..., 0]
    assert np.isclose(float(out["nll_sum"]), (nll * weights).sum(), rtol=1e-5)
    assert float(out["weight_sum"]) == weights.sum()
    z = 1e-2 * (log_z ** 2 * weights).sum()
    assert np.isclose(float(out["loss_sum"]), (nll * weights).sum() + z, rtol=1e-5)


def test_label_smoothing_matches_soft_target_cross_entropy():
    """loss = -sum_v q_v log p_v with q = (1-eps) onehot + eps/V' over the first V' ids (the real
    vocabulary); ids past V' (table padding) get no target mass. nll stays the plain loss."""
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 5, 16)).astype(np.float32)
    targets = rng.integers(0, 12, size=(2, 5))
    weights = (rng.random((2, 5)) > 0.3).astype(np.float32)
    out = cross_entropy_sums(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights),
                             label_smoothing=0.1, num_classes=12)
    logp = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum(-1, keepdims=True))
    q = np.zeros_like(logp)
    q[..., :12] = 0.1 / 12
    np.put_along_axis(q, targets[..., None], np.take_along_axis(q, targets[..., None], -1) + 0.9, -1)
    want = -(q * logp).sum(-1)
    np.testing.assert_allclose(out["loss_sum"], (want * weights).sum(), rtol=1e-5)
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    np.testing.assert_allclose(out["nll_sum"], (nll * weights).sum(), rtol=1e-5)


def test_token_nll_is_optax_cross_entropy_for_any_leading_shape():
    """The MLM's slots (B, P, V), NSP's and a classifier's examples (B, K) share it: values and
    gradients as optax's integer-label cross-entropy, in float32 from bf16 logits too."""
    rng = np.random.default_rng(2)
    for shape in ((3, 4, 11), (5, 2), (6, 3)):
        logits = jnp.asarray(rng.normal(size=shape), jnp.bfloat16)
        labels = jnp.asarray(rng.integers(0, shape[-1], size=shape[:-1]))
        ours, _ = token_nll(logits, labels)
        theirs = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), labels)
        assert ours.dtype == jnp.float32 and ours.shape == shape[:-1]
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)
        g_ours = jax.jit(jax.grad(lambda x: token_nll(x, labels)[0].sum()))(logits.astype(jnp.float32))
        g_theirs = jax.jit(jax.grad(lambda x: optax.softmax_cross_entropy_with_integer_labels(x, labels).sum()))(
            logits.astype(jnp.float32))
        np.testing.assert_allclose(g_ours, g_theirs, rtol=1e-6, atol=1e-6)
