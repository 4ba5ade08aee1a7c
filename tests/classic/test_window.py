"""The window featuriser on hand-made (text, spans, tags) triples of open_tagged's shape."""
import numpy as np

from llmjax.classic import window
from llmjax.classic.config import FeaturesConfig
from llmjax.classic.features import vectorizer
from llmjax.data.tagged import join_words

CODE = "def getValue_2(self, x):\n    return self.x"


def _spans(text, words):
    spans, at = [], 0
    for w in words:
        at = text.index(w, at)
        spans.append((at, at + len(w)))
        at += len(w)
    return np.array(spans, np.int32)


def test_a_word_has_its_own_features_its_gaps_and_its_neighbours():
    words = ["def", "getValue_2", "self", "x", "return", "self", "x"]
    rows = window.sentence_features(CODE, _spans(CODE, words), window=1, affix=2)
    assert len(rows) == len(words)
    assert rows[1] == ["w=getValue_2", "lower=getvalue_2", "shape=xXx_d", "gap[-]=", "gap[+]=(",
                       "p1=g", "p2=ge", "s1=2", "s2=_2", "w[-1]=def", "lower[-1]=def",
                       "w[+1]=self", "lower[+1]=self"]
    assert "w[-1]=BOS" in rows[0] and "gap[-]=^" in rows[0]
    assert "w[+1]=EOS" in rows[-1] and "gap[+]=$" in rows[-1]
    assert "gap[+]=):\n" in rows[3] and "gap[-]=):\n" in rows[4]  # a line break is kept
    assert "gap[-]=." in rows[6]
    assert "p3=x" not in rows[3] and "p1=x" in rows[3]  # no affix longer than the word


def test_a_wider_window_sees_farther_and_past_both_ends():
    text, spans = join_words(["a", "b", "c"])
    rows = window.sentence_features(text, spans, window=2, affix=1)
    assert {"w[-2]=BOS", "w[-1]=BOS", "w[+1]=b", "w[+2]=c"} <= set(rows[0])
    assert {"w[-2]=a", "w[-1]=b", "w[+1]=EOS", "w[+2]=EOS"} <= set(rows[2])
    none = window.sentence_features(text, spans, window=0, affix=1)
    assert not any(f.startswith(("w[", "lower[")) for f in none[1])


def test_shape_collapses_runs():
    assert [window.shape(w) for w in ("Hello", "HTTPServer", "x_1", "__init__", "42")] == \
        ["Xx", "Xx", "x_d", "_x_", "d"]


def test_featurise_gives_one_row_per_word_in_order_that_the_vectorizer_reads():
    sentences = [join_words(["x", "=", "f", "(", ")"]), join_words(["import", "os"])]
    rows = window.featurise(sentences, window=1, affix=2)
    assert len(rows) == 7 and rows[5][0] == "w=import" and rows[6][0] == "w=os"
    x = vectorizer(FeaturesConfig(kind="bow")).fit_transform(rows)
    assert x.shape[0] == 7 and x[5].sum() == len(rows[5])  # each feature counted once
