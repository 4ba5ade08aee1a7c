"""Bag of words and TF-IDF over token lists (scikit-learn's vectorizers).

Every text arrives as its list of token strings (llmjax.classic.units: words or pieces; the
tag task's per-word window features, llmjax.classic.window, are such lists too), so one
vectorizer serves both tasks: n-grams of those tokens, kept where at least min_df train lists
hold them and, with max_features, only the most frequent. bow counts them; tfidf weighs a
count c by (1 + ln c) (sublinear tf) times idf = ln((1 + n) / (1 + df)) + 1 (scikit-learn's
smoothed idf over the n train lists), each row scaled to unit l2 norm.
"""
from __future__ import annotations

from typing import Any

from llmjax.classic.config import FeaturesConfig


def _same(tokens: Any) -> Any:
    """The vectorizer's preprocessor and tokenizer: the lists come tokenized."""
    return tokens


def vectorizer(features: FeaturesConfig, ngrams: bool = True) -> Any:
    """An unfitted CountVectorizer (bow) or TfidfVectorizer (tfidf) over token lists; ngrams
    False: single tokens only (a word's window features are no sequence)."""
    from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer

    common = {"analyzer": "word", "preprocessor": _same, "tokenizer": _same, "token_pattern": None,
              "lowercase": False, "min_df": features.min_df,
              "max_features": features.max_features or None,
              "ngram_range": (features.ngram_min, features.ngram_max) if ngrams else (1, 1)}
    if features.kind == "bow":
        return CountVectorizer(**common)
    if features.kind == "tfidf":
        return TfidfVectorizer(sublinear_tf=True, norm="l2", **common)
    raise ValueError(f"config.features.kind={features.kind!r}: bow and tfidf are vectorizers; "
                     "the embedding kind averages vectors (llmjax.classic.averaged)")
