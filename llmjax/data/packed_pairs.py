"""Tokenized (source, target) pairs packed into fixed rows; the batch of a step is pure.

Each example is its source ids + EOS (cut to source_len) and its target ids + EOS (cut to
target_len); the decoder reads [start_id] + target[:-1] of the same example. Examples are packed
as Flax's examples/wmt input_pipeline does (pack_dataset): in a fixed order (a permutation drawn
from the seed, or the given order), an example joins the current row while both its source and
its target still fit, else it opens a new row. Packing happens once; batches then walk the rows
in llmjax.data.order.EpochOrder (shuffled per epoch for training, in order for evaluation with
zero-weight padding rows at the end), so a batch is a function of (seed, step) alone.

Neither rows nor the examples in packing order are materialised: packing keeps each example's
length and start in a virtual flat sequence per side (16 bytes an example and side, plus the
8-byte permutation), a row is the examples [first, end) of that order, and a batch gathers its
examples' tokens from where they are stored (llmjax.data.example_cache.Ragged: the run's
memory-mapped cache, or arrays in memory) and derives segment ids, positions and decoder inputs
from the starts.

Shape key: B batch rows, S source_len, T target_len, L a row's width (S or T), N examples, R rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmjax.data.example_cache import Ragged
from llmjax.data.order import EpochOrder

_PACK_STREAM = 0x5EED  # second rng key of the packing permutation (EpochOrder's are epochs)


def example_ids(ids: np.ndarray, eos_id: int, length: int) -> np.ndarray:
    """ids + [eos_id], cut to length: one side of an example as the model sees it."""
    return np.append(np.asarray(ids, np.int32), np.int32(eos_id))[:length]


def packing_order(n: int, seed: int, shuffle: bool) -> np.ndarray:
    """The order (N,) examples are packed in: a permutation drawn from the seed, or as given."""
    return np.random.default_rng([seed, _PACK_STREAM]).permutation(n) if shuffle else np.arange(n)


def row_bounds(first_R: np.ndarray, row_B: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(real, first, end), each (B,), of batch rows row_B (-1: a padding row): row r holds the
    examples [first_R[r], first_R[r + 1]) of packing order; a padding row reads [0, 1), not real."""
    real_B = row_B >= 0
    first_B = np.where(real_B, first_R[np.maximum(row_B, 0)], 0)
    end_B = np.where(real_B, first_R[np.maximum(row_B, 0) + 1], 1)
    return real_B, first_B, end_B


def row_slots(starts_N: np.ndarray, lengths_N: np.ndarray, first_B: np.ndarray, end_B: np.ndarray,
              real_B: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What each of a row's `width` slots holds, with the examples laid end to end in packing
    order (starts_N, lengths_N): (inside an example, else padding; which example, in packing
    order; the position in it, 0 on padding), each (B, width)."""
    row_start_B = np.where(real_B, starts_N[first_B], 0)
    row_end_B = np.where(real_B, starts_N[end_B - 1] + lengths_N[end_B - 1], 0)
    flat_BxL = row_start_B[:, None] + np.arange(width)
    inside_BxL = flat_BxL < row_end_B[:, None]
    flat_BxL = np.where(inside_BxL, flat_BxL, 0)
    example_BxL = np.searchsorted(starts_N, flat_BxL, side="right") - 1
    return inside_BxL, example_BxL, np.where(inside_BxL, flat_BxL - starts_N[example_BxL], 0)


def gather_ids(seqs: Ragged, stored_BxL: np.ndarray, at_BxL: np.ndarray, valid_BxL: np.ndarray) -> np.ndarray:
    """seqs[stored][at] where valid, else 0 (int64): the ids a batch reads from where they are stored."""
    where_BxL = np.where(valid_BxL, np.asarray(seqs.offsets[stored_BxL], np.int64) + at_BxL, 0)
    if not len(seqs.flat):
        return np.zeros(where_BxL.shape, np.int64)
    return np.where(valid_BxL, np.asarray(seqs.flat[where_BxL], np.int64), 0)


class _Side:
    """One side (source or target) of every example, laid out in packing order (lengths and
    starts only); tokens are gathered from `seqs` when rows are read."""

    def __init__(self, seqs: Ragged, order_N: np.ndarray, eos_id: int, length: int):
        """`example_ids` of every sequence, as lengths (vectorised: millions take a second)."""
        raw_lengths_N = seqs.lengths()[order_N]
        self.truncated = int((raw_lengths_N + 1 > length).sum())
        self.lengths_N = np.minimum(raw_lengths_N + 1, length)
        self.starts_N = np.cumsum(self.lengths_N) - self.lengths_N
        self.num_tokens = int(self.lengths_N.sum())
        self.seqs, self.order_N, self.eos_id, self.length = seqs, order_N, eos_id, length

    def rows(self, first_B: np.ndarray, end_B: np.ndarray, real_B: np.ndarray):
        """(tokens, example index in packing order, position) of rows holding examples
        [first, end), each (B, length); token -1 marks padding."""
        inside_BxL, example_BxL, positions_BxL = row_slots(self.starts_N, self.lengths_N, first_B, end_B,
                                                           real_B, self.length)
        stored_BxL = self.order_N[example_BxL]  # the example's index where its tokens are
        offsets = self.seqs.offsets
        raw_len_BxL = np.asarray(offsets[stored_BxL + 1], np.int64) - np.asarray(offsets[stored_BxL], np.int64)
        raw_BxL = inside_BxL & (positions_BxL < raw_len_BxL)
        ids_BxL = gather_ids(self.seqs, stored_BxL, positions_BxL, raw_BxL)
        tokens_BxL = np.where(raw_BxL, ids_BxL, np.where(inside_BxL, self.eos_id, -1))
        return tokens_BxL, np.where(inside_BxL, example_BxL, -1), positions_BxL.astype(np.int32)


class PackedPairs:
    """Packed rows of tokenized pairs and the batches that walk them (see the module docstring).

    `stats`: examples, rows, examples per row, source/target examples truncated and the share
    of source/target slots that hold tokens.
    """

    def __init__(self, sources: Ragged | Sequence[np.ndarray], targets: Ragged | Sequence[np.ndarray],
                 *, source_len: int,
                 target_len: int, batch_size: int, seed: int, shuffle: bool, eos_id: int,
                 pad_id: int, start_id: int):
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets: give one "
                             "target per source")
        if not len(sources):
            raise ValueError("no examples to pack: the split is empty")
        if source_len < 1 or target_len < 1 or batch_size < 1:
            raise ValueError(f"source_len={source_len}, target_len={target_len} and "
                             f"batch_size={batch_size} must be positive")
        n = len(sources)
        order_N = packing_order(n, seed, shuffle)
        as_ragged = lambda seqs: seqs if isinstance(seqs, Ragged) else Ragged.from_arrays(seqs)  # noqa: E731
        self._src = _Side(as_ragged(sources), order_N, eos_id, source_len)
        self._tgt = _Side(as_ragged(targets), order_N, eos_id, target_len)
        self._first_R = _pack(self._src.lengths_N, self._tgt.lengths_N, source_len, target_len)
        self.num_examples, self.num_rows = n, len(self._first_R) - 1
        self.batch_size, self.pad_id, self.start_id = batch_size, pad_id, start_id
        self._order = EpochOrder(self.num_rows, batch_size, seed, shuffle)
        self.stats = {
            "examples": n, "rows": self.num_rows,
            "examples_per_row": round(n / self.num_rows, 3),
            "source_truncated": int(self._src.truncated),
            "target_truncated": int(self._tgt.truncated),
            "source_fill": round(self._src.num_tokens / (self.num_rows * source_len), 4),
            "target_fill": round(self._tgt.num_tokens / (self.num_rows * target_len), 4)}

    @property
    def num_batches(self) -> int:
        """Batches that cover every row once (the last one padded when not shuffling)."""
        return self._order.num_batches

    def rows(self, index: int, rows: slice | None = None) -> np.ndarray:
        """Row indices of batch `index` (or of its `rows`); -1 marks padding."""
        return self._order.indices(index, rows)

    def batch(self, index: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Batch `index` (or its `rows`): int32 (B, S) / (B, T) arrays, weights float32 (B, T)."""
        real_B, first_B, end_B = row_bounds(self._first_R, self.rows(index, rows))
        src_BxS, src_ex_BxS, src_pos_BxS = self._src.rows(first_B, end_B, real_B)
        tgt_BxT, tgt_ex_BxT, tgt_pos_BxT = self._tgt.rows(first_B, end_B, real_B)
        tgt_real_BxT = tgt_BxT >= 0
        previous_BxT = np.concatenate([np.full_like(tgt_BxT[:, :1], -1), tgt_BxT[:, :-1]], axis=1)
        decoder_inputs_BxT = np.where(tgt_pos_BxT == 0, self.start_id, previous_BxT)
        pad = lambda x, real: np.where(real, x, self.pad_id).astype(np.int32)  # noqa: E731
        segments = lambda ex, real: np.where(real, ex - first_B[:, None] + 1, 0).astype(np.int32)  # noqa: E731
        return {
            "source": pad(src_BxS, src_BxS >= 0),
            "source_segment_ids": segments(src_ex_BxS, src_BxS >= 0),
            "source_positions": src_pos_BxS,
            "decoder_inputs": pad(decoder_inputs_BxT, tgt_real_BxT),
            "targets": pad(tgt_BxT, tgt_real_BxT),
            "target_segment_ids": segments(tgt_ex_BxT, tgt_real_BxT),
            "target_positions": tgt_pos_BxT,
            "weights": tgt_real_BxT.astype(np.float32),
        }


def _pack(source_lengths_N: np.ndarray, target_lengths_N: np.ndarray, source_len: int,
          target_len: int) -> np.ndarray:
    """First example of each row, plus N at the end (R + 1,): greedy, both sides must fit."""
    firsts, used_s, used_t = [0], 0, 0
    for i, (s, t) in enumerate(zip(source_lengths_N.tolist(), target_lengths_N.tolist())):
        if used_s + s > source_len or used_t + t > target_len:
            firsts.append(i)
            used_s, used_t = 0, 0
        used_s += s
        used_t += t
    firsts.append(len(source_lengths_N))
    return np.asarray(firsts, np.int64)
