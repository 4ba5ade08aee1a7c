"""The averaged-embedding classifier end to end on a hand-made embeddings file: word vectors
looked up by the word, piece vectors by the Word2Vec run's tokenizer, and a file that fits
none of the texts as one line before fitting."""
import numpy as np
import pytest

from llmjax.classic.config import base_config, resolve
from llmjax.classic.run import run_baseline
from llmjax.config import UserError
from llmjax.data.embeddings_file import save_embeddings
from llmjax.data.tokenizers import ByteTokenizer


def _config(path, **features):
    c = base_config("classify", "embedding")
    c.task.max_examples = 60
    c.features.embeddings = str(path)
    for key, value in features.items():
        c.features[key] = value
    return resolve(c)


def test_word_vectors_average_into_a_classifier(tmp_path):
    words = ["def", "self", "return", "if", "None", "msg", "url", "xml", "task", "logger"]
    vectors = np.random.default_rng(0).normal(size=(len(words), 8)).astype(np.float32)
    save_embeddings(str(tmp_path / "w.npy"), vectors, words, None)
    msgs = []
    results = run_baseline(_config(tmp_path / "w.npy"), str(tmp_path / "run"), log=msgs.append)
    assert 0.0 <= results["accuracy"] <= 1.0 and len(results["f1"]) == 10
    assert any(m.startswith("features: mean of 8-dimensional vectors of words (") for m in msgs)


def test_piece_vectors_follow_the_word2vec_runs_tokenizer(tmp_path):
    tok = ByteTokenizer()
    tok.save(str(tmp_path / "w2v" / "tokenizer"))
    vectors = np.random.default_rng(0).normal(size=(tok.vocab_size, 4)).astype(np.float32)
    save_embeddings(str(tmp_path / "p.npy"), vectors, tok.pieces(), tok.fingerprint())
    cfg = _config(tmp_path / "p.npy", units="pieces", tokenizer_from=str(tmp_path / "w2v"))
    msgs = []
    results = run_baseline(cfg, str(tmp_path / "run"), log=msgs.append)
    assert 0.0 <= results["accuracy"] <= 1.0
    assert any("(100.0% of train tokens" in m for m in msgs)  # every byte has its row


def test_a_file_of_other_words_is_one_line_before_fitting(tmp_path):
    save_embeddings(str(tmp_path / "o.npy"), np.ones((2, 3), np.float32), ["zzqx", "qqzx"], None)
    msgs = []
    with pytest.raises(UserError, match=r"none of the train texts' words is among its 2 tokens: use "
                                        r"vectors trained on this corpus"):
        run_baseline(_config(tmp_path / "o.npy"), str(tmp_path / "run"), log=msgs.append)
    assert not any(m.startswith("done") for m in msgs)
