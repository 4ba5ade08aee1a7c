"""Cross-entropy sums against a float64 numpy reference, with weights and z-loss."""
import numpy as np

from llmjax.training.objectives import cross_entropy_sums


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
