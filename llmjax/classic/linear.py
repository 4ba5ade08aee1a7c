"""Logistic regression (scikit-learn, multinomial, L2) on the classic features.

L-BFGS is deterministic: the same features and keys give the same weights on every run, so a
baseline needs no seed. Its probabilities come back as K columns in class-id order (a class
train lacks has none of its own in scikit-learn's output: probability 0 here).

Shape key: N examples, K classes.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from llmjax.classic.config import ClassifierConfig


def fit(x_N: Any, labels_N: np.ndarray, cfg: ClassifierConfig) -> tuple[Any, bool]:
    """(the fitted LogisticRegression, whether L-BFGS converged within max_iter)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=cfg.C, max_iter=cfg.max_iter, solver="lbfgs",
                               class_weight=cfg.class_weight or None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x_N, labels_N)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return model, converged


def probabilities(model: Any, x_N: Any, num_classes: int) -> np.ndarray:
    """(N, K) float64: each example's class probabilities, columns in class-id order."""
    probs_NxK = np.zeros((x_N.shape[0], num_classes))
    probs_NxK[:, model.classes_] = model.predict_proba(x_N)
    return probs_NxK


def iterations(model: Any) -> int:
    """The L-BFGS iterations the fit took."""
    return int(np.max(model.n_iter_))


def num_params(model: Any) -> int:
    """The fitted weights and biases: the count a results table sets beside a network's."""
    return int(model.coef_.size + model.intercept_.size)
