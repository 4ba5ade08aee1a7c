"""Classification metrics: a weighted confusion matrix summed over eval batches, then scores.

The device part (`confusion_sums`) is jittable and additive, so the host adds one K x K matrix
per batch and never gathers predictions; padded rows carry weight 0. The host part
(`classification_metrics`) follows scikit-learn with zero_division=0 and labels=range(K): a
class that is never predicted has precision 0, one with no examples has recall 0, and the
macro averages are over all K classes (scikit-learn without `labels` skips classes absent from
both truth and predictions).

Shape key: B batch rows, K classes.
"""
from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np


def confusion_sums(logits_BxK: jax.Array, labels_B: jax.Array, weights_B: jax.Array) -> jax.Array:
    """(K, K) float32: [true class, argmax class] summed weights; labels outside 0..K-1 add 0."""
    num_classes = logits_BxK.shape[-1]
    true_BxK = jax.nn.one_hot(labels_B, num_classes, dtype=jnp.float32)
    true_BxK = true_BxK * weights_B.astype(jnp.float32)[:, None]
    pred_BxK = jax.nn.one_hot(jnp.argmax(logits_BxK, axis=-1), num_classes, dtype=jnp.float32)
    # HIGHEST: TPUs and GPUs would otherwise round the f32 weights to bf16/tf32 in the matmul.
    return jnp.einsum("bk,bj->kj", true_BxK, pred_BxK, precision=jax.lax.Precision.HIGHEST)


def classification_metrics(confusion_KxK: np.ndarray, label_names: Sequence[str]) -> dict:
    """Accuracy, macro and per-class precision/recall/F1, support and the confusion matrix.

    JSON-able: per-class values are dicts name -> value, the matrix nested lists (row = true).
    """
    c_KxK = np.asarray(confusion_KxK, dtype=np.float64)
    names = tuple(label_names)
    if c_KxK.ndim != 2 or c_KxK.shape != (len(names), len(names)):
        raise ValueError(f"confusion matrix of shape {c_KxK.shape} does not match "
                         f"{len(names)} label names: pass the (K, K) sum of confusion_sums and "
                         "the K class names")
    total = c_KxK.sum()
    if total <= 0:
        raise ValueError("the confusion matrix is empty (no weighted examples): evaluate at "
                         "least one example with weight > 0")
    tp_K = np.diag(c_KxK)
    support_K = c_KxK.sum(axis=1)  # true examples of each class
    predicted_K = c_KxK.sum(axis=0)
    precision_K = _safe_div(tp_K, predicted_K)
    recall_K = _safe_div(tp_K, support_K)
    f1_K = _safe_div(2 * tp_K, support_K + predicted_K)  # 2tp / (2tp + fp + fn)

    def per_class(v_K):
        return {n: float(v) for n, v in zip(names, v_K)}

    return {
        "accuracy": float(tp_K.sum() / total),
        "f1_macro": float(f1_K.mean()),
        "precision_macro": float(precision_K.mean()),
        "recall_macro": float(recall_K.mean()),
        "precision": per_class(precision_K),
        "recall": per_class(recall_K),
        "f1": per_class(f1_K),
        "support": per_class(support_K),
        "examples": float(total),
        "confusion": c_KxK.tolist(),
    }


def majority_baselines(train_labels_N: np.ndarray, eval_labels_N: np.ndarray,
                       num_classes: int) -> dict[str, float]:
    """The majority-class (train's most frequent class, predicted for every eval example) and
    chance baselines of the eval labels: what a classifier must beat."""
    n = len(eval_labels_N)
    top = int(np.bincount(np.asarray(train_labels_N, np.int64), minlength=num_classes).argmax())
    acc = float(np.mean(np.asarray(eval_labels_N) == top)) if n else 0.0
    # Predicting one class always: F1 of that class is 2acc/(1+acc), the others' 0.
    return {"majority_accuracy": acc, "majority_f1_macro": 2 * acc / (1 + acc) / num_classes,
            "chance_accuracy": 1.0 / num_classes}


def _safe_div(num_K: np.ndarray, den_K: np.ndarray) -> np.ndarray:
    """num / den, 0 where den is 0 (scikit-learn's zero_division=0)."""
    return np.divide(num_K, den_K, out=np.zeros_like(num_K), where=den_K > 0)
