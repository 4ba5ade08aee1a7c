"""Bad input before fitting: an empty split, one train class, a label set that disagrees."""
import numpy as np
import pytest

from llmjax.classic.checks import check_splits
from llmjax.config import UserError

NAMES = ("neg", "pos", "mixed")


def test_splits_that_share_their_classes_pass():
    check_splits("d", np.array([0, 1, 2, 1]), np.array([1, 0]), NAMES)  # eval may lack a class


def test_an_empty_split_is_one_line():
    with pytest.raises(UserError, match=r"^config.task.dataset='d': the eval split has no examples: "
                                        r"point config.task.eval_split at a split with data$"):
        check_splits("d", np.array([0, 1]), np.array([], np.int64), NAMES)
    with pytest.raises(UserError, match="the train split has no words"):
        check_splits("d", np.array([], np.int64), np.array([0]), NAMES, what="words")


def test_one_train_class_is_one_line():
    with pytest.raises(UserError, match=r"every train example is 'pos': a classifier needs at least two"):
        check_splits("d", np.array([1, 1]), np.array([1]), NAMES)


def test_an_eval_class_train_lacks_is_one_line():
    with pytest.raises(UserError, match=r"the splits disagree on the label set: eval has examples of "
                                        r"'mixed' but train has none: pick splits"):
        check_splits("d", np.array([0, 1]), np.array([1, 2, 2]), NAMES)
