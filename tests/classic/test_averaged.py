"""The averaged-embedding representation on a hand-made embeddings array, and the one-liners
for a file that does not fit the run's tokens."""
import numpy as np
import pytest

from llmjax.classic import averaged
from llmjax.config import UserError
from llmjax.data.tokenizers import ByteTokenizer

VECTORS = np.array([[1.0, 0.0], [0.0, 2.0], [4.0, 4.0]], np.float32)


def test_a_text_is_the_mean_of_the_vectors_the_file_has():
    rows = averaged.token_rows(["def", "self", "return"], "words")
    x, found = averaged.mean_vectors([["def", "self", "nope"], ["return"], ["nope"], []], rows, VECTORS)
    np.testing.assert_allclose(x, [[0.5, 1.0], [4.0, 4.0], [0.0, 0.0], [0.0, 0.0]])
    assert found == pytest.approx(3 / 5)


def test_pieces_are_looked_up_by_id():
    rows = averaged.token_rows(["<a>", "<b>", "<c>"], "pieces")
    x, found = averaged.mean_vectors([["2", "0"]], rows, VECTORS)
    np.testing.assert_allclose(x, [[2.5, 2.0]])
    assert found == 1.0


def test_standardise_uses_the_train_statistics():
    train = np.array([[0.0, 5.0], [2.0, 5.0]])
    a, b = averaged.standardise(train, np.array([[4.0, 6.0]]))
    np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])
    np.testing.assert_allclose(b, [[3.0, 1.0]])  # a constant train dimension is only shifted


def test_a_file_that_does_not_fit_the_tokens_is_one_line():
    tok = ByteTokenizer()
    with pytest.raises(UserError, match=r"holds word vectors .* set units='words'$"):
        averaged.check_fit("w.npy", 10, None, "pieces", tok)
    with pytest.raises(UserError, match=r"pieces \(fingerprint abc\) but config.features.units='words': "
                                        r"set units='pieces' and features.tokenizer_from"):
        averaged.check_fit("p.npy", 10, "abc", "words", None)
    with pytest.raises(UserError, match=r"trained on the pieces of tokenizer abc but this run's is .*"
                                        r"set config.features.tokenizer_from to the Word2Vec run's workdir"):
        averaged.check_fit("p.npy", 10, "abc", "pieces", tok)
    with pytest.raises(UserError, match=r"pieces but config.features.tokenizer_from is empty .*"
                                        r"set it to the Word2Vec run's workdir"):
        averaged.check_fit("p.npy", 10, "abc", "pieces", None, "")
    averaged.check_fit("p.npy", 10, "abc", "pieces", None, "runs/w2v")  # checked once it is loaded
    with pytest.raises(UserError, match="has 999 rows but the tokenizer has 262 ids"):
        averaged.check_fit("p.npy", 999, tok.fingerprint(), "pieces", tok)
    averaged.check_fit("p.npy", tok.vocab_size, tok.fingerprint(), "pieces", tok)
    averaged.check_fit("w.npy", 10, None, "words", None)
