"""The Word2Vec window representation for token labelling: a word's features are the Word2Vec
vectors of the words at offsets -window..+window side by side, then one indicator per offset
that is 1 where that vector is missing (a word the file lacks, or an offset past the sentence's
ends) and its block therefore zero: after standardisation a zero block alone would read as some
word's vector. The caller standardises with the train words' statistics (llmjax.classic.
averaged.standardise), as the averaged-embedding representation is.

Shape key: W words of a split (all its sentences together), V tokens of the file, D dimensions,
O = 2 * window + 1 offsets.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def window_vectors(sentences: Sequence[Sequence[str]], rows: dict[str, int], vectors_VxD: np.ndarray,
                   window: int) -> tuple[np.ndarray, float]:
    """((W, O * D + O) float32: the O offsets' vectors, offset -window first, then their O
    missing indicators; the share of the words the file has). rows: each word's row of
    vectors_VxD (llmjax.classic.averaged.token_rows); a neighbour never crosses a sentence."""
    lengths_S = np.array([len(s) for s in sentences], np.int64)
    num_words, dim = int(lengths_S.sum()), vectors_VxD.shape[1]
    offsets = 2 * window + 1
    ids_W = np.array([rows.get(w, -1) for s in sentences for w in s], np.int64)  # -1: no vector
    position_W = np.arange(num_words) - np.repeat(np.cumsum(lengths_S) - lengths_S, lengths_S)
    length_W = np.repeat(lengths_S, lengths_S)
    out_WxF = np.zeros((num_words, offsets * (dim + 1)), np.float32)
    for k, shift in enumerate(range(-window, window + 1)):
        inside_W = (position_W + shift >= 0) & (position_W + shift < length_W)
        at_W = np.clip(np.arange(num_words) + shift, 0, max(num_words - 1, 0))
        source_W = np.where(inside_W, ids_W[at_W], -1)
        has_W = source_W >= 0
        out_WxF[has_W, k * dim:(k + 1) * dim] = vectors_VxD[source_W[has_W]]
        out_WxF[~has_W, offsets * dim + k] = 1.0
    return out_WxF, float(np.count_nonzero(ids_W >= 0)) / max(num_words, 1)
