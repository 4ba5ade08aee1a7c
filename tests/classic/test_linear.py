"""The logistic regression: the same fit every time, probabilities in class-id order."""
import numpy as np

from llmjax.classic import linear
from llmjax.classic.config import ClassifierConfig


def _data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 5))
    y = np.where(x[:, 0] > 0.5, 3, np.where(x[:, 1] > 0, 1, 0))  # class 2 never occurs
    return x, y


def test_fits_are_deterministic():
    x, y = _data()
    a, converged = linear.fit(x, y, ClassifierConfig(C=2.0))
    b, _ = linear.fit(x, y, ClassifierConfig(C=2.0))
    assert converged
    np.testing.assert_array_equal(a.coef_, b.coef_)
    np.testing.assert_array_equal(a.intercept_, b.intercept_)


def test_probabilities_follow_class_ids_and_a_class_train_lacks_gets_zero():
    x, y = _data()
    model, _ = linear.fit(x, y, ClassifierConfig())
    probs = linear.probabilities(model, x, 4)
    assert probs.shape == (60, 4)
    np.testing.assert_array_equal(probs[:, 2], 0.0)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0)
    assert np.mean(probs.argmax(1) == y) > 0.9


def test_a_fit_cut_short_by_max_iter_says_so():
    x, y = _data()
    model, converged = linear.fit(x, y, ClassifierConfig(C=1e4, max_iter=2))
    assert not converged and linear.iterations(model) == 2
