"""Agreement of two embeddings' nearest neighbours: how far two trainings of word vectors (llmjax's
Word2Vec and gensim's, or two seeds of one) found the same neighbourhoods, beyond similarity scores.

Shape key: W shared words, D vector width.
"""
from __future__ import annotations

import numpy as np


def neighbour_overlap(a: dict[str, np.ndarray], b: dict[str, np.ndarray], probes: list[str], top: int) -> float:
    """Mean |top-k(a) & top-k(b)| / k of the probes, neighbours searched among the shared words."""
    shared = sorted(set(a) & set(b))
    index = {w: i for i, w in enumerate(shared)}

    def unit(vectors):
        m = np.stack([vectors[w] for w in shared]).astype(np.float64)
        return m / np.maximum(np.linalg.norm(m, axis=1, keepdims=True), 1e-12)

    ua, ub = unit(a), unit(b)
    overlaps = []
    for w in probes:
        i = index[w]
        lists = []
        for u in (ua, ub):
            sims = u @ u[i]
            sims[i] = -np.inf
            lists.append(set(np.argsort(-sims)[:top].tolist()))
        overlaps.append(len(lists[0] & lists[1]) / top)
    return float(np.mean(overlaps))
