"""Which examples a batch holds, as a pure function of (seed, step): the stateless data order.

Training visits examples without replacement, one permutation per epoch
(`default_rng([seed, epoch])`); the k-th example overall (k = step * batch_size + row) is
`perm(k // n)[k % n]`, so batches straddle epoch ends correctly and a resumed run, on any number
of hosts, sees exactly the batches an uninterrupted one would. Evaluation takes examples in
order; rows past the end are -1 (padding, zero weight).
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np


class EpochOrder:
    def __init__(self, num_examples: int, batch_size: int, seed: int = 0, shuffle: bool = True):
        if num_examples < 1 or batch_size < 1:
            raise ValueError(f"num_examples={num_examples} and batch_size={batch_size} must be positive")
        self.num_examples, self.batch_size = num_examples, batch_size
        self.seed, self.shuffle = seed, shuffle
        self._perms: OrderedDict[int, np.ndarray] = OrderedDict()

    @property
    def num_batches(self) -> int:
        """Batches that cover every example once (the last one padded when not shuffling)."""
        return -(-self.num_examples // self.batch_size)

    def _perm(self, epoch: int) -> np.ndarray:
        if epoch not in self._perms:
            # Generator.permutation(n) shuffles arange(n): the same shuffle of an int32 arange
            # is the same permutation in half the memory (a large corpus has tens of millions)
            perm = np.arange(self.num_examples, dtype=np.int32 if self.num_examples < 2**31 else np.int64)
            np.random.default_rng([self.seed, epoch]).shuffle(perm)
            self._perms[epoch] = perm
            while len(self._perms) > 4:
                self._perms.popitem(last=False)
        return self._perms[epoch]

    def indices(self, step: int, rows: slice | None = None) -> np.ndarray:
        """Example indices of the step's batch (or of its `rows`); -1 marks padding."""
        if step < 0:
            raise ValueError(f"step={step} must be zero or more")
        ks = step * self.batch_size + np.arange(self.batch_size)[rows if rows is not None else slice(None)]
        if not self.shuffle:
            return np.where(ks < self.num_examples, ks, -1)
        idx = np.empty(len(ks), np.int64)
        epochs = ks // self.num_examples
        for epoch in np.unique(epochs):
            sel = epochs == epoch
            idx[sel] = self._perm(int(epoch))[ks[sel] % self.num_examples]
        return idx
