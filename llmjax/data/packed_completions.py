"""Tokenized (source, target) pairs as prompt -> completion rows for a decoder-only model, packed.

An example is one sequence: its prompt, the source's first seq_len - target_len - 1 ids then
[SEP] (the source's head is kept, as the encoder-decoder keeps it; the separator is always
there, since it is where a completion starts), then its completion, the target's ids + EOS cut
to target_len. So an example never exceeds seq_len tokens, and a prompt plus target_len new
tokens fits the model's seq_len positions when decoding. The model reads every token of an
example but its last and predicts the next; the loss weighs only the predictions of completion
tokens (target + EOS): 1 on the positions from [SEP] to the one before the last, 0 on the
source and on padding.

Examples are packed as llmjax.data.packed_pairs packs pairs, into rows of seq_len positions:
in a fixed order (a permutation drawn from the seed, or the given order) an example joins the
current row while it fits, else it opens a new row; each has its own segment id (1, 2, ...; 0
is padding) and positions from 0, which GPT takes as `segment_ids` and `positions` (attention
confined to the example, positions as in decoding). Packing happens once; batches walk the rows
in llmjax.data.order.EpochOrder, so a batch is a function of (seed, step) alone, and gather
their examples' tokens from where they are stored (an example_cache.Ragged: the run's
memory-mapped cache, memory_input.JoinedSources, or arrays in memory).

Shape key: B batch rows, L seq_len, N examples, R rows.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmjax.data.example_cache import Ragged
from llmjax.data.order import EpochOrder
from llmjax.data.packed_pairs import gather_ids, packing_order, row_bounds, row_slots


def prompt_ids(source: Sequence[int] | np.ndarray, sep_id: int, prompt_len: int) -> np.ndarray:
    """An example's prompt: the source's first prompt_len - 1 ids, then sep_id (int32)."""
    return np.append(np.asarray(source, np.int32)[:prompt_len - 1], np.int32(sep_id))


class PackedCompletions:
    """Packed prompt -> completion rows and the batches that walk them (module docstring).

    `stats`: examples, rows, examples per row, sources and targets cut, and the share of a
    row's positions that hold an example's input.
    """

    def __init__(self, sources: Ragged | Sequence[np.ndarray], targets: Ragged | Sequence[np.ndarray],
                 *, seq_len: int, target_len: int, batch_size: int, seed: int, shuffle: bool,
                 sep_id: int, eos_id: int, pad_id: int):
        if len(sources) != len(targets):
            raise ValueError(f"{len(sources)} sources but {len(targets)} targets: give one target per source")
        if not len(sources):
            raise ValueError("no examples to pack: the split is empty")
        if target_len < 1 or seq_len - target_len < 2 or batch_size < 1:
            raise ValueError(f"seq_len={seq_len}, target_len={target_len}, batch_size={batch_size}: a row "
                             "needs room for a source token, [SEP] and target_len completion tokens")
        as_ragged = lambda seqs: seqs if isinstance(seqs, Ragged) else Ragged.from_arrays(seqs)  # noqa: E731
        self._sources, self._targets = as_ragged(sources), as_ragged(targets)
        n = len(sources)
        self._order_N = packing_order(n, seed, shuffle)
        self.prompt_len = seq_len - target_len
        raw_source_N = self._sources.lengths()[self._order_N]
        self._target_raw_N = self._targets.lengths()[self._order_N]
        self._prompt_N = np.minimum(raw_source_N, self.prompt_len - 1) + 1  # source kept + [SEP]
        completion_N = np.minimum(self._target_raw_N + 1, target_len)  # target + EOS, cut
        self._span_N = self._prompt_N + completion_N - 1  # input positions: all tokens but the last
        self._start_N = np.cumsum(self._span_N) - self._span_N
        self._first_R = _pack(self._span_N, seq_len)
        self.seq_len, self.sep_id, self.eos_id, self.pad_id = seq_len, sep_id, eos_id, pad_id
        self.num_examples, self.num_rows = n, len(self._first_R) - 1
        self.batch_size = batch_size
        self._order = EpochOrder(self.num_rows, batch_size, seed, shuffle)
        self.stats = {
            "examples": n, "rows": self.num_rows, "examples_per_row": round(n / self.num_rows, 3),
            "source_truncated": int((raw_source_N > self.prompt_len - 1).sum()),
            "target_truncated": int((self._target_raw_N + 1 > target_len).sum()),
            "fill": round(float(self._span_N.sum()) / (self.num_rows * seq_len), 4)}

    @property
    def num_batches(self) -> int:
        """Batches that cover every row once (the last one padded when not shuffling)."""
        return self._order.num_batches

    def rows(self, index: int, rows: slice | None = None) -> np.ndarray:
        """Row indices of batch `index` (or of its `rows`); -1 marks padding."""
        return self._order.indices(index, rows)

    def batch(self, index: int, rows: slice | None = None) -> dict[str, np.ndarray]:
        """Batch `index` (or its `rows`): inputs, targets, positions, segment_ids int32 (B, L),
        weights float32 (B, L) (1 where the target is a completion token)."""
        real_B, first_B, end_B = row_bounds(self._first_R, self.rows(index, rows))
        inside_BxL, example_BxL, positions_BxL = row_slots(self._start_N, self._span_N, first_B, end_B,
                                                           real_B, self.seq_len)
        inputs_BxL = self._tokens(example_BxL, positions_BxL)
        targets_BxL = self._tokens(example_BxL, positions_BxL + 1)
        completion_BxL = inside_BxL & (positions_BxL + 1 >= self._prompt_N[example_BxL])
        pad = lambda x: np.where(inside_BxL, x, self.pad_id).astype(np.int32)  # noqa: E731
        return {"inputs": pad(inputs_BxL), "targets": pad(targets_BxL),
                "positions": positions_BxL.astype(np.int32),
                "segment_ids": np.where(inside_BxL, example_BxL - first_B[:, None] + 1, 0).astype(np.int32),
                "weights": completion_BxL.astype(np.float32)}

    def _tokens(self, example_BxL: np.ndarray, at_BxL: np.ndarray) -> np.ndarray:
        """The token at position `at` of each example (in packing order): a kept source id,
        [SEP], a target id or the EOS after it."""
        stored_BxL = self._order_N[example_BxL]  # where the example's ids are stored
        prompt_BxL = self._prompt_N[example_BxL]
        in_source_BxL = at_BxL < prompt_BxL - 1
        source_BxL = gather_ids(self._sources, stored_BxL, at_BxL, in_source_BxL)
        at_target_BxL = at_BxL - prompt_BxL
        in_target_BxL = (at_target_BxL >= 0) & (at_target_BxL < self._target_raw_N[example_BxL])
        target_BxL = gather_ids(self._targets, stored_BxL, at_target_BxL, in_target_BxL)
        return np.where(in_source_BxL, source_BxL, np.where(
            at_BxL == prompt_BxL - 1, self.sep_id, np.where(in_target_BxL, target_BxL, self.eos_id)))


def _pack(span_N: np.ndarray, width: int) -> np.ndarray:
    """First example of each row, plus N at the end (R + 1,): greedy, in order."""
    firsts, used = [0], 0
    for i, n in enumerate(span_N.tolist()):
        if used + n > width:
            firsts.append(i)
            used = 0
        used += n
    firsts.append(len(span_N))
    return np.asarray(firsts, np.int64)
