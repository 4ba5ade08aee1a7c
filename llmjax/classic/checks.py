"""Bad input found before fitting, each one line naming the problem and the fix: an empty
split, and a label set that disagrees between the splits (an eval class no train example has:
the classifier could never predict it, and its scores would say nothing about the features).

Shape key: N examples (or words) of a split, K classes.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmjax.config import UserError


def check_splits(dataset: str, train_labels_N: np.ndarray, eval_labels_N: np.ndarray,
                 names: Sequence[str], what: str = "examples") -> None:
    """UserError when a split is empty, train has one class only, or an eval class has no
    train example."""
    for split, labels_N in (("train", train_labels_N), ("eval", eval_labels_N)):
        if not len(labels_N):
            raise UserError(f"config.task.dataset={dataset!r}: the {split} split has no {what}: "
                            f"point config.task.{split}_split at a split with data")
    train_K = np.bincount(train_labels_N, minlength=len(names))
    eval_K = np.bincount(eval_labels_N, minlength=len(names))
    if np.count_nonzero(train_K) < 2:
        raise UserError(f"config.task.dataset={dataset!r}: every train {what[:-1]} is "
                        f"{names[int(train_K.argmax())]!r}: a classifier needs at least two "
                        "classes in train; use a larger or another train split")
    unseen = [names[k] for k in np.flatnonzero((eval_K > 0) & (train_K == 0))]
    if unseen:
        shown = ", ".join(map(repr, unseen[:5])) + (f" and {len(unseen) - 5} more" if len(unseen) > 5 else "")
        raise UserError(f"config.task.dataset={dataset!r}: the splits disagree on the label set: "
                        f"eval has {what} of {shown} but train has none: pick splits that share "
                        "their classes (or leave those classes out of eval)")
