"""The stateless data order: each epoch's permutation, batches across epoch ends, rows."""
import numpy as np
import pytest

from llmjax.data.order import EpochOrder


@pytest.mark.parametrize("n", [1, 7, 100_003])
def test_an_epoch_is_the_generators_permutation_in_int32(n):
    order = EpochOrder(n, batch_size=5, seed=11)
    perm = order._perm(2)
    assert perm.dtype == np.int32  # half the memory of int64 for tens of millions of examples
    np.testing.assert_array_equal(perm, np.random.default_rng([11, 2]).permutation(n))


def test_batches_walk_the_epochs_without_replacement_and_rows_slice_them():
    order = EpochOrder(10, batch_size=4, seed=0)
    seen = np.concatenate([order.indices(s) for s in range(5)])  # 20 = two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    np.testing.assert_array_equal(seen[:10], order._perm(0))
    np.testing.assert_array_equal(order.indices(2), np.r_[order._perm(0)[8:], order._perm(1)[:2]])
    np.testing.assert_array_equal(order.indices(3, slice(1, 3)), order.indices(3)[1:3])
    assert order.indices(3).dtype == np.int64


def test_eval_is_in_order_with_padding_past_the_end():
    order = EpochOrder(10, batch_size=4, shuffle=False)
    assert order.num_batches == 3
    np.testing.assert_array_equal(order.indices(2), [8, 9, -1, -1])
    with pytest.raises(ValueError, match="step=-1"):
        order.indices(-1)
