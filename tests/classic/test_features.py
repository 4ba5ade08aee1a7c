"""Bag of words and TF-IDF over hand-made texts: the known counts, idf values and l2 rows; the
word pattern on code and prose; pieces; pairs joined."""
import math

import numpy as np
import pytest

from llmjax.classic import units
from llmjax.classic.config import WORD_PATTERN, FeaturesConfig
from llmjax.classic.features import vectorizer
from llmjax.data.tokenizers import ByteTokenizer

TEXTS = [["a", "b"], ["a", "a", "c"], ["c", "a", "b", "b"]]


def _dense(vec, texts):
    x = vec.fit_transform(texts).toarray()
    return {t: x[:, i] for t, i in vec.vocabulary_.items()}


def test_bow_counts_each_token_and_its_ngrams():
    cols = _dense(vectorizer(FeaturesConfig(kind="bow", ngram_max=2)), TEXTS)
    np.testing.assert_array_equal(cols["a"], [1, 2, 1])
    np.testing.assert_array_equal(cols["b"], [1, 0, 2])
    np.testing.assert_array_equal(cols["a a"], [0, 1, 0])
    np.testing.assert_array_equal(cols["b b"], [0, 0, 1])
    assert "b a" not in cols and len(cols) == 3 + 5  # a b c; a b, a a, a c, c a, b b


def test_tfidf_is_sublinear_tf_times_smoothed_idf_in_unit_rows():
    cols = _dense(vectorizer(FeaturesConfig(kind="tfidf")), TEXTS)
    idf = {t: math.log((1 + 3) / (1 + df)) + 1 for t, df in (("a", 3), ("b", 2), ("c", 2))}
    # Text 2 holds a twice (tf 1 + ln 2) and c once; text 3 a once, b twice, c once.
    raw = [{"a": idf["a"], "b": idf["b"]},
           {"a": (1 + math.log(2)) * idf["a"], "c": idf["c"]},
           {"a": idf["a"], "b": (1 + math.log(2)) * idf["b"], "c": idf["c"]}]
    for i, row in enumerate(raw):
        norm = math.sqrt(sum(v * v for v in row.values()))
        for t in "abc":
            assert cols[t][i] == pytest.approx(row.get(t, 0.0) / norm, abs=1e-12), (i, t)


def test_min_df_and_max_features_keep_the_frequent_tokens():
    assert set(_dense(vectorizer(FeaturesConfig(kind="bow", min_df=3)), TEXTS)) == {"a"}
    kept = _dense(vectorizer(FeaturesConfig(kind="bow", ngram_max=2, max_features=2)), TEXTS)
    assert set(kept) == {"a", "b"}  # the two largest total counts: a 4, b 3


def test_the_word_pattern_keeps_identifiers_whole_and_punctuation_alone():
    got = units.words(["def f(x_1):\n    return x.y >= 2.5  # héllo, World"], WORD_PATTERN)[0]
    assert got == ["def", "f", "(", "x_1", ")", ":", "return", "x", ".", "y", ">", "=", "2", ".",
                   "5", "#", "héllo", ",", "World"]
    assert units.words(["Hello World"], WORD_PATTERN, lowercase=True) == [["hello", "world"]]


def test_pieces_are_ids_and_pairs_are_joined_by_the_separator():
    tok = ByteTokenizer()
    first = units.pieces(tok, ["hé", "a"])
    assert first == [[str(i) for i in tok.encode("hé")], [str(i) for i in tok.encode("a")]]
    assert len(set(first[0][1:])) == 2  # the two bytes of é stay two tokens
    joined = units.joined([["a"], ["b", "c"]], [["x"], ["y"]])
    assert joined == [["a", units.PAIR_SEP, "x"], ["b", "c", units.PAIR_SEP, "y"]]
    assert units.joined([["a"]], None) == [["a"]]
