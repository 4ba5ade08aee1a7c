"""confusion_sums and classification_metrics against scikit-learn on the same predictions."""
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_recall_fscore_support,
)

from llmjax.evaluation.classification import classification_metrics, confusion_sums

K = 10
NAMES = tuple(f"class{k}" for k in range(K))
NEVER_PREDICTED = (3, 7, 8)
NEVER_TRUE = (8, 9)  # 9 is predicted (precision 0, recall 0 by zero_division); 8 is absent from
# both, so scikit-learn counts it in the macro averages only because labels=range(K) is passed


def _data(seed, rows=640, padded=40):
    """Logits/labels with real class counts; the last `padded` rows are padding (weight 0)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, K - 2, rows)  # never 8 or 9
    logits = rng.normal(size=(rows, K)).astype(np.float32)
    logits[np.arange(rows), labels] += 1.0  # better than chance, far from perfect
    logits[:, list(NEVER_PREDICTED)] = -10.0
    weights = np.ones(rows, np.float32)
    weights[rows - padded:] = 0.0
    labels[rows - padded:] = rng.choice([-1, 0, 3], padded)  # what padding holds must not count
    return logits, labels.astype(np.int32), weights


def _summed(logits, labels, weights, batch=64):
    step = jax.jit(confusion_sums)
    total = np.zeros((K, K), np.float64)
    for s in range(0, len(labels), batch):
        c = step(jnp.asarray(logits[s:s + batch]), jnp.asarray(labels[s:s + batch]),
                 jnp.asarray(weights[s:s + batch]))
        assert c.shape == (K, K) and c.dtype == jnp.float32
        total += np.asarray(c)
    return total


def _check_against_sklearn(metrics, y_true, y_pred, sample_weight=None):
    labels = list(range(K))
    kw = {"labels": labels, "sample_weight": sample_weight}
    np.testing.assert_allclose(metrics["confusion"], confusion_matrix(y_true, y_pred, **kw),
                               rtol=1e-6)
    assert metrics["accuracy"] == pytest.approx(
        accuracy_score(y_true, y_pred, sample_weight=sample_weight), rel=1e-6)
    assert metrics["f1_macro"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0, **kw), rel=1e-6)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, zero_division=0, **kw)
    for name, ours, ref in (("precision", metrics["precision"], p), ("recall", metrics["recall"], r),
                            ("f1", metrics["f1"], f), ("support", metrics["support"], s)):
        np.testing.assert_allclose([ours[n] for n in NAMES], ref, rtol=1e-6, err_msg=name)
    pm, rm, _, _ = precision_recall_fscore_support(y_true, y_pred, average="macro",
                                                   zero_division=0, **kw)
    assert metrics["precision_macro"] == pytest.approx(pm, rel=1e-6)
    assert metrics["recall_macro"] == pytest.approx(rm, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_sklearn_with_padding_and_missing_classes(seed):
    logits, labels, weights = _data(seed)
    metrics = classification_metrics(_summed(logits, labels, weights), NAMES)
    keep = weights > 0
    y_true, y_pred = labels[keep], logits[keep].argmax(-1)
    assert not np.isin(NEVER_PREDICTED, y_pred).any() and 9 in y_pred
    assert not np.isin(NEVER_TRUE, y_true).any() and len(y_true) == 600
    _check_against_sklearn(metrics, y_true, y_pred)
    assert metrics["examples"] == 600
    assert metrics["precision"]["class3"] == 0 and metrics["recall"]["class9"] == 0
    assert metrics["f1"]["class8"] == 0 and metrics["f1_macro"] == pytest.approx(
        np.mean([metrics["f1"][n] for n in NAMES]))  # over all K classes, 8 included
    assert 0.2 < metrics["accuracy"] < 0.9  # a real mix of right and wrong
    json.dumps(metrics)


def test_fractional_weights_match_sklearn_sample_weight():
    logits, labels, _ = _data(2, padded=0)
    weights = np.random.default_rng(3).uniform(0.1, 2.0, len(labels)).astype(np.float32)
    metrics = classification_metrics(_summed(logits, labels, weights), NAMES)
    _check_against_sklearn(metrics, labels, logits.argmax(-1), sample_weight=weights)


def test_confusion_sums_one_batch_by_hand():
    logits = jnp.array([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 3.0, 1.0], [5.0, 0.0, 0.0]])
    c = confusion_sums(logits, jnp.array([0, 2, 1, -1]), jnp.array([1.0, 1.0, 0.5, 1.0]))
    np.testing.assert_array_equal(c, [[1, 0, 0], [0, 0.5, 0], [0, 1, 0]])


def test_errors():
    with pytest.raises(ValueError, match="does not match 3 label names"):
        classification_metrics(np.ones((4, 4)), ("a", "b", "c"))
    with pytest.raises(ValueError, match="empty"):
        classification_metrics(np.zeros((2, 2)), ("a", "b"))
