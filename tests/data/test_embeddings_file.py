"""The embeddings file: a round trip, and one-line errors for a broken or mismatched pair."""
import json

import numpy as np
import pytest

from llmjax.config import UserError
from llmjax.data.embeddings_file import load_embeddings, paths, read_header, save_embeddings


def test_round_trip_keeps_rows_tokens_and_fingerprint(tmp_path):
    vectors = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    tokens = ["a", "▁b", "", "line\nbreak", "é"]
    save_embeddings(str(tmp_path / "emb.npy"), vectors, tokens, "abc123")
    for path in (tmp_path / "emb.npy", tmp_path / "emb"):  # with or without .npy
        got, got_tokens, fingerprint = load_embeddings(str(path))
        np.testing.assert_array_equal(got, vectors)
        assert got.dtype == np.float32 and got_tokens == tokens and fingerprint == "abc123"
    assert np.load(tmp_path / "emb.npy").shape == (5, 3)  # plain NumPy reads the vectors
    header = read_header(str(tmp_path / "emb.npy"))
    assert (header["count"], header["dim"]) == (5, 3)


def test_words_have_no_fingerprint(tmp_path):
    save_embeddings(str(tmp_path / "w"), np.zeros((2, 4)), ["x", "y"], None)
    assert load_embeddings(str(tmp_path / "w"))[2] is None


def test_rows_and_tokens_must_agree(tmp_path):
    with pytest.raises(UserError, match="2 tokens"):
        save_embeddings(str(tmp_path / "e"), np.zeros((3, 4)), ["x", "y"], None)


def test_missing_and_mismatched_files_are_one_line(tmp_path):
    with pytest.raises(UserError, match="missing") as e:
        load_embeddings(str(tmp_path / "nothing.npy"))
    assert "\n" not in str(e.value)
    save_embeddings(str(tmp_path / "e"), np.zeros((3, 4)), ["x", "y", "z"], None)
    np.save(paths(str(tmp_path / "e"))[0], np.zeros((2, 4), np.float32))  # vectors of another run
    with pytest.raises(UserError, match="different runs"):
        read_header(str(tmp_path / "e"))
    with open(paths(str(tmp_path / "e"))[1], "w") as f:
        json.dump({"format": 99}, f)
    with pytest.raises(UserError, match="not format 1"):
        load_embeddings(str(tmp_path / "e"))
