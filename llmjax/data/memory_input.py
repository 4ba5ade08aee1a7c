"""Sources with the translation memory's target joined after a separator: neural fuzzy repair.

Why: on a corpus where a close match is often in the memory (software messages), a model that
reads the match's target beside the source can copy what carries over and edit the rest, where
a model that reads the source alone must generate everything, and a fallback must choose one or
the other (Bulte & Tezcan 2019, "Neural Fuzzy Repair"; Xu et al. 2020). Copy attention
(models/copy_head.py) copies from the joined target as from any source token.

An example's source becomes source + [SEP] + the target of its match, where the match's
similarity reaches the threshold, else the source alone. Training pairs are matched to another
training pair (never themselves: llmjax.data.retrieval.MemoryIndex.matches()), eval pairs
to the training pairs, as the memory baseline is.

`JoinedSources` is a view, not a copy: it reads both sides from their Ragged arrays (the run's
memory-mapped example cache) when a batch gathers them, and keeps 8 bytes of offsets and 8 of
match an example.

Shape key: N examples, M memory (train) examples.
"""
from __future__ import annotations

import numpy as np

from llmjax.data.example_cache import Ragged


class _JoinedFlat:
    """The virtual flat token array of JoinedSources: positions -> token ids."""

    def __init__(self, joined: JoinedSources):
        self._j = joined

    def __len__(self) -> int:
        return int(self._j.offsets[-1])

    def __getitem__(self, where) -> np.ndarray:
        j = self._j
        where = np.asarray(where, np.int64)
        example = np.searchsorted(j.offsets, where, side="right") - 1
        pos = where - j.offsets[example]
        source_len = j.source_lengths_N[example]
        in_source = pos < source_len
        begin = np.asarray(j.sources.offsets[example], np.int64)
        out = np.where(in_source, _take(j.sources.flat, np.where(in_source, begin + pos, 0)), j.sep_id)
        match = j.match_N[example]
        target_pos = pos - source_len - 1
        in_target = target_pos >= 0
        begin = np.asarray(j.targets.offsets[np.maximum(match, 0)], np.int64)
        return np.where(in_target, _take(j.targets.flat, np.where(in_target, begin + target_pos, 0)), out)


def _take(flat, where: np.ndarray) -> np.ndarray:
    return np.asarray(flat[where], np.int64) if len(flat) else np.zeros(where.shape, np.int64)


class JoinedSources(Ragged):
    """Ragged of sources[i] + [sep_id] + targets[match_N[i]] (sources[i] alone where match_N[i]
    is -1): what PackedPairs and the decodes read as the source side."""

    def __init__(self, sources: Ragged, targets: Ragged, match_N: np.ndarray, sep_id: int):
        match_N = np.asarray(match_N, np.int64)
        if len(match_N) != len(sources):
            raise ValueError(f"{len(match_N)} matches for {len(sources)} sources: give one per source (-1: none)")
        if len(match_N) and match_N.max() >= len(targets):
            raise ValueError(f"match {int(match_N.max())} is past the memory's {len(targets)} targets")
        self.sources, self.targets, self.match_N, self.sep_id = sources, targets, match_N, int(sep_id)
        self.source_lengths_N = sources.lengths()
        memory_lengths_N = np.where(match_N >= 0, targets.lengths()[np.maximum(match_N, 0)] + 1, 0)
        offsets = np.concatenate([[0], np.cumsum(self.source_lengths_N + memory_lengths_N)]).astype(np.int64)
        super().__init__(_JoinedFlat(self), offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        source = np.asarray(self.sources[i], np.int64)
        m = int(self.match_N[i])
        if m < 0:
            return source
        return np.concatenate([source, [self.sep_id], np.asarray(self.targets[m], np.int64)])


def matches_over(index_N: np.ndarray, similarity_N: np.ndarray, threshold: float,
                 count: int) -> np.ndarray:
    """int64 (count,) match of each example: its memory index where the similarity reaches
    threshold, else -1; examples past the matched ones (a split longer than the memory's pool)
    get -1."""
    out = np.full(count, -1, np.int64)
    keep = np.where(np.asarray(similarity_N) >= threshold, np.asarray(index_N, np.int64), -1)
    out[:len(keep)] = keep[:count]
    return out

