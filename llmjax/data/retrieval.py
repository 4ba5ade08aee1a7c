"""The most similar training source of each query, by TF-IDF over words: the retrieval baseline.

Why: a pair's target is often phrased like the target of a similar training source (in the
standard library, the same method on sibling classes, or a pure-Python twin of a C module), so
answering with the nearest training pair's target (Liu et al. 2018, NNGen; a standard baseline of
code summarisation) is a far stronger yardstick than copying the source: a model that does not
beat it has not learned more than lookup.

Words are identifiers (a snake_case name also as its parts) and single symbols, lower-cased;
weights are TF-IDF with sublinear term frequency over word unigrams and bigrams (scikit-learn),
and similarity is the cosine. The index keeps the first `pool` training sources (the task's
order), so that a translation corpus of millions of pairs is not indexed whole for a baseline.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

POOL = 100_000  # training sources indexed at most
_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|\S")
_CHUNK = 256  # queries scored at once: a dense (chunk x pool) block of similarities


def words(text: str) -> list[str]:
    """Lower-cased identifiers and symbols, each snake_case name followed by its parts."""
    out = []
    for token in _WORD.findall(text):
        out.append(token.lower())
        if "_" in token.strip("_"):
            out.extend(part.lower() for part in token.split("_") if part)
    return out


def nearest(train_sources: Sequence[str], queries: Sequence[str], pool: int = POOL) -> list[int]:
    """For each query the index of its most similar source among the first `pool` train_sources
    (the first of equals), or -1 where none shares a word with it."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    indexed = list(train_sources[:pool])
    if not indexed or not queries:
        return [-1] * len(queries)
    vectorizer = TfidfVectorizer(tokenizer=words, lowercase=False, token_pattern=None,
                                 ngram_range=(1, 2), sublinear_tf=True, dtype=np.float32)
    train_NxW = vectorizer.fit_transform(indexed)
    query_QxW = vectorizer.transform(list(queries))
    out: list[int] = []
    for start in range(0, query_QxW.shape[0], _CHUNK):
        sim_QxN = (query_QxW[start:start + _CHUNK] @ train_NxW.T).toarray()
        best_Q = sim_QxN.argmax(axis=1)
        out.extend(int(i) if row[i] > 0.0 else -1 for row, i in zip(sim_QxN, best_Q))
    return out
