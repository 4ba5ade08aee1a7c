"""The word tokenizer: most frequent words, [UNK] for the rest, exact offsets, save and load."""
import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.data.tokenizers import load_tokenizer
from llmjax.data.word_tokenizer import WordTokenizer
from tests.helpers import tiny_config


def test_vocabulary_ids_offsets_and_decoding(tmp_path):
    tok = WordTokenizer.train(["def read(self): return self.read_all()", "self.x = 1 # café"], vocab_size=6 + 4)
    assert tok.words == ["self", "1", "café", "def"]  # by count, ties by the word
    assert (tok.eos_id, tok.unk_id, tok.vocab_size) == (4, 5, 10)
    text = "self.café = read"
    (ids, offsets), = tok.encode_with_offsets([text])
    assert ids.tolist() == [0, 2, tok.unk_id] and ids.tolist() == tok.encode(text)
    assert [text[s:e] for s, e in offsets] == ["self", "café", "read"]
    assert tok.decode(ids) == "self café \ufffd"
    assert tok.byte_lengths()[:4].tolist() == [4, 1, 5, 3]
    tok.save(str(tmp_path))
    again = load_tokenizer(str(tmp_path))
    assert again.words == tok.words and again.fingerprint() == tok.fingerprint()
    assert WordTokenizer(["x"]).fingerprint() != tok.fingerprint()
    np.testing.assert_array_equal(tok.special_mask(), [False] * 4 + [True] * 6)


def test_data_config_takes_the_word_tokenizer():
    from llmjax.experiment import resolve
    resolve(_with(tiny_config("stdlib"), tokenizer="word", vocab_size=1000))
    with pytest.raises(ConfigError, match="data.vocab_size"):
        resolve(_with(tiny_config("stdlib"), tokenizer="word", vocab_size=6))


def _with(c, **data):
    for k, v in data.items():
        c.data[k] = v
    return c
