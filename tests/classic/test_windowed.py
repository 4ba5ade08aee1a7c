"""The Word2Vec window representation on hand-made sentences and vectors: each offset's vector
side by side, a zero vector and its indicator for a word the file lacks or an offset past a
sentence's ends (never the neighbouring sentence's word)."""
import numpy as np
import pytest

from llmjax.classic import averaged, windowed

VECTORS = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]], np.float32)
ROWS = averaged.token_rows(["def", "self", "x"], "words")


def test_a_word_is_its_windows_vectors_side_by_side_with_missing_indicators():
    x, found = windowed.window_vectors([["def", "nope", "x"], ["self"]], ROWS, VECTORS, window=1)
    assert x.dtype == np.float32 and x.shape == (4, 3 * 2 + 3)
    np.testing.assert_array_equal(x, [
        # -1      0       +1      indicators -1, 0, +1
        [0, 0,    1, 0,   0, 0,   1, 0, 1],  # "def": past the start; "nope" missing
        [1, 0,    0, 0,   4, 4,   0, 1, 0],  # "nope" itself missing
        [0, 0,    4, 4,   0, 0,   1, 0, 1],  # "x": past the end
        [0, 0,    0, 2,   0, 0,   1, 0, 1],  # "self": the sentence before is not its neighbour
    ])
    assert found == pytest.approx(3 / 4)


def test_window_zero_is_the_word_alone_and_no_words_is_no_rows():
    x, found = windowed.window_vectors([["x", "nope"]], ROWS, VECTORS, window=0)
    np.testing.assert_array_equal(x, [[4, 4, 0], [0, 0, 1]])
    assert found == 0.5
    x, found = windowed.window_vectors([[]], ROWS, VECTORS, window=2)
    assert x.shape == (0, 5 * 2 + 5) and found == 0.0
