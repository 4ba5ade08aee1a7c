"""Token streams, the unigram baseline, prepare()'s cache, and stateless packed batches."""
import errno
import json
import math
import os

import numpy as np
import pytest

from llmjax.config import DataConfig, UserError
from llmjax.data import pipeline
from llmjax.data.pipeline import (PackedBatches, document_layout, eval_batches, prepare,
                                  tokenize_documents, unigram_loss)
from llmjax.data.tokenizers import ByteTokenizer


def test_tokenize_documents_appends_eos():
    stream = tokenize_documents(ByteTokenizer(), ["ab", "", "é"])
    assert stream.dtype == np.uint16
    assert stream.tolist() == [97, 98, 256, 256, 0xC3, 0xA9, 256]

    class Big(ByteTokenizer):
        vocab_size, eos_id = 70_000, 69_999
    assert tokenize_documents(Big(), ["a"]).dtype == np.uint32
    assert tokenize_documents(Big(), ["a"]).tolist() == [97, 69_999]


def test_unigram_loss_by_hand():
    # train counts [2, 1, 0] + 1 -> p = [3, 2, 1] / 6; val = [0, 2]
    expected = -(math.log(3 / 6) + math.log(1 / 6)) / 2
    assert unigram_loss(np.array([0, 0, 1]), np.array([0, 2]), 3) == pytest.approx(expected)


# ---------------------------------------------------------------- PackedBatches


def _stream(n=1001):
    return np.arange(n, dtype=np.uint16)


def test_windows_shift_and_cover_the_stream():
    b = PackedBatches(_stream(), seq_len=10, batch_size=4, shuffle=False)
    assert b.num_rows == 100
    x = b.batch(0)
    assert set(x) == {"inputs", "targets", "weights"}
    assert x["inputs"].dtype == np.int32 and x["weights"].dtype == np.float32
    assert x["inputs"].shape == (4, 10)
    np.testing.assert_array_equal(x["targets"], x["inputs"] + 1)
    np.testing.assert_array_equal(x["inputs"][:, 0], [0, 10, 20, 30])  # stride seq_len
    np.testing.assert_array_equal(x["targets"][:, -1], [10, 20, 30, 40])  # window seq_len+1


def test_each_epoch_is_a_permutation_and_batches_straddle_epochs():
    n_rows, bs, seed = 100, 7, 3
    b = PackedBatches(_stream(), 10, bs, seed=seed)
    rows = np.concatenate([b.rows(s) for s in range(30)])  # 210 rows: epochs 0, 1 and part of 2
    perms = [np.random.default_rng([seed, e]).permutation(n_rows) for e in range(3)]
    np.testing.assert_array_equal(rows, np.concatenate(perms)[:210])
    assert sorted(rows[:100]) == list(range(100)) and sorted(rows[100:200]) == list(range(100))
    x = b.batch(14)  # rows k = 98..104: two from epoch 0, five from epoch 1
    np.testing.assert_array_equal(x["inputs"][:, 0] // 10, np.r_[perms[0][98:], perms[1][:5]])


def test_batches_are_stateless_and_seeded():
    a = PackedBatches(_stream(), 10, 8, seed=1)
    b = PackedBatches(_stream(), 10, 8, seed=1)
    forward = [a.batch(s)["inputs"] for s in range(40)]
    backward = [b.batch(s)["inputs"] for s in reversed(range(40))][::-1]
    for f, g in zip(forward, backward):
        np.testing.assert_array_equal(f, g)
    np.testing.assert_array_equal(a.batch(7)["inputs"], forward[7])  # again, after others
    c = PackedBatches(_stream(), 10, 8, seed=2)
    assert not np.array_equal(c.batch(0)["inputs"], forward[0])


def test_process_rows_slices_concatenate_to_the_global_batch():
    b = PackedBatches(_stream(), 10, 8, seed=0, document_mask=True, eos_id=5)
    for step in (0, 12, 13):
        whole = b.batch(step)
        parts = [b.batch(step, slice(i, i + 2)) for i in range(0, 8, 2)]
        for key in whole:
            np.testing.assert_array_equal(np.concatenate([p[key] for p in parts]), whole[key])


def test_eval_pads_past_the_end_with_zero_weight():
    b = PackedBatches(_stream(), 10, 32, shuffle=False)
    assert b.num_batches == 4
    last = b.batch(3)
    np.testing.assert_array_equal(last["weights"][:, 0], [1] * 4 + [0] * 28)
    assert (last["inputs"][4:] == 0).all() and (last["targets"][4:] == 0).all()
    np.testing.assert_array_equal(last["inputs"][:4, 0], [960, 970, 980, 990])
    batches = list(eval_batches(_stream(), 10, 32))
    assert len(batches) == 4 and sum(x["weights"].sum() for x in batches) == 100 * 10
    assert len(list(eval_batches(_stream(), 10, 32, num_batches=2))) == 2
    assert len(list(eval_batches(_stream(), 10, 32, num_batches=99))) == 4


def test_document_mask_segments_and_positions():
    eos = 9
    stream = np.array([1, 2, 9, 3, 4, 5, 9, 6, 9, 7, 8], np.uint16)
    x = PackedBatches(stream, 10, 1, shuffle=False, document_mask=True, eos_id=eos).batch(0)
    np.testing.assert_array_equal(x["inputs"][0], [1, 2, 9, 3, 4, 5, 9, 6, 9, 7])
    np.testing.assert_array_equal(x["targets"][0], [2, 9, 3, 4, 5, 9, 6, 9, 7, 8])
    np.testing.assert_array_equal(x["segment_ids"][0], [1, 1, 1, 2, 2, 2, 2, 3, 3, 4])
    np.testing.assert_array_equal(x["positions"][0], [0, 1, 2, 0, 1, 2, 3, 0, 1, 0])
    assert (x["weights"] == 1).all()  # EOS is predicted; the first token after it still counts
    assert x["segment_ids"].dtype == np.int32 and x["positions"].dtype == np.int32
    seg, pos = document_layout(np.array([[9, 9, 1]]), eos)
    assert seg.tolist() == [[1, 2, 3]] and pos.tolist() == [[0, 0, 0]]


def test_bad_streams_and_arguments():
    with pytest.raises(ValueError, match="too few for one row.*lower config.data.seq_len"):
        PackedBatches(np.arange(10), seq_len=10, batch_size=2)
    with pytest.raises(ValueError, match="needs eos_id"):
        PackedBatches(np.arange(100), 10, 2, document_mask=True)
    PackedBatches(np.arange(11), seq_len=10, batch_size=2).batch(5)  # one row, many epochs


# ---------------------------------------------------------------- prepare


def _corpus(tmp_path, n=12):
    d = tmp_path / "corpus"
    d.mkdir(exist_ok=True)
    for i in range(n):
        (d / f"f{i:02d}.txt").write_text(f"document {i}: " + "lorem ipsum dolor " * (i + 5))
    return f"text:{d}/*.txt"


def _no_reread(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("read or tokenized again")
    monkeypatch.setattr(pipeline, "load_documents", boom)
    monkeypatch.setattr(pipeline, "tokenize_documents", boom)


def test_prepare_builds_then_reuses_the_cache(tmp_path, monkeypatch):
    cfg = DataConfig(dataset=_corpus(tmp_path), tokenizer="char", val_fraction=0.25)
    logs = []
    first = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    assert first.train_tokens.dtype == np.uint16 and first.val_tokens.ndim == 1
    eos = first.tokenizer.eos_id
    assert (first.train_tokens == eos).sum() == first.stats["train_documents"]
    assert first.train_tokens[-1] == eos and first.val_tokens[-1] == eos
    assert first.stats["train_tokens"] == first.stats["train_chars"] + first.stats["train_documents"]
    assert first.unigram_loss == pytest.approx(
        unigram_loss(first.train_tokens, first.val_tokens, first.tokenizer.vocab_size))
    assert any("unigram baseline" in line for line in logs)
    data = tmp_path / "run" / "data"
    assert sorted(os.listdir(data)) == ["meta.json", "train.npy", "val.npy"]
    assert json.loads((data / "meta.json").read_text())["stats"] == first.stats
    mtime = os.stat(data / "train.npy").st_mtime_ns

    _no_reread(monkeypatch)
    again = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    assert "reusing" in logs[-1] and os.stat(data / "train.npy").st_mtime_ns == mtime
    np.testing.assert_array_equal(again.train_tokens, first.train_tokens)
    np.testing.assert_array_equal(again.val_tokens, first.val_tokens)
    assert again.unigram_loss == first.unigram_loss and again.stats == first.stats
    assert again.tokenizer.fingerprint() == first.tokenizer.fingerprint()


def test_prepare_rebuilds_when_the_fingerprint_changes(tmp_path):
    spec = _corpus(tmp_path)
    cfg = DataConfig(dataset=spec, tokenizer="byte", val_fraction=0.25)
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    capped = prepare(DataConfig(**{**cfg.__dict__, "max_train_chars": 100}), str(tmp_path / "run"),
                     log=lambda s: None)
    assert capped.stats["train_chars"] == 100 and len(capped.train_tokens) < len(first.train_tokens)
    (tmp_path / "corpus" / "f00.txt").write_text("changed text, longer than before " * 10)
    changed = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert changed.stats["train_chars"] + changed.stats["val_chars"] != \
        first.stats["train_chars"] + first.stats["val_chars"]
    with pytest.raises(ValueError, match="is byte but config.data.tokenizer='char'"):
        prepare(DataConfig(**{**cfg.__dict__, "tokenizer": "char"}), str(tmp_path / "run"))


def test_a_cache_read_lossily_is_not_reused_by_a_strict_run(tmp_path):
    """decode_errors decides the documents: a strict run must not train on replace's U+FFFD."""
    spec = _corpus(tmp_path)
    (tmp_path / "corpus" / "f05.txt").write_bytes("caf\u00e9 latin-1".encode("latin-1"))
    cfg = DataConfig(dataset=spec, tokenizer="byte", val_fraction=0.25)
    prepare(DataConfig(**{**cfg.__dict__, "decode_errors": "replace"}), str(tmp_path / "run"),
            log=lambda s: None)
    with pytest.raises(ValueError, match="f05.txt is not UTF-8 at byte 3"):
        prepare(cfg, str(tmp_path / "run"), log=lambda s: None)


def test_prepare_rebuilds_a_damaged_cache(tmp_path):
    cfg = DataConfig(dataset=_corpus(tmp_path), tokenizer="byte", val_fraction=0.25)
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    np.save(tmp_path / "run" / "data" / "val.npy", np.zeros(3, np.uint16))
    again = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    np.testing.assert_array_equal(again.val_tokens, first.val_tokens)


def test_prepare_stdlib_with_sentencepiece(tmp_path, monkeypatch):
    cfg = DataConfig(dataset="stdlib", tfds_data_dir=str(tmp_path / "tfds"),
                     tokenizer="sentencepiece", vocab_size=512, spm_train_chars=200_000,
                     max_train_chars=300_000)
    p = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert p.stats["train_chars"] == 300_000 and p.stats["val_chars"] > 500_000
    assert 1.5 < p.stats["chars_per_token"] < 4
    assert 3.0 < p.unigram_loss < math.log(512)
    assert p.tokenizer.decode(p.val_tokens[:2000]).startswith(p.tokenizer.decode(p.val_tokens[:100]))
    _no_reread(monkeypatch)
    again = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    np.testing.assert_array_equal(again.val_tokens, p.val_tokens)


def _tampered(tmp_path, name, values):
    """Overwrite a cached stream in place with other values of the same length and dtype."""
    path = tmp_path / "run" / "data" / name
    arr = np.load(path)
    np.save(path, np.full_like(arr, values))


def test_an_overwritten_cache_is_rebuilt_not_trained_on(tmp_path):
    cfg = DataConfig(dataset=_corpus(tmp_path), tokenizer="byte", val_fraction=0.25)
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    _tampered(tmp_path, "train.npy", 7)  # same length: the old length check passes it
    logs = []
    again = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    np.testing.assert_array_equal(again.train_tokens, first.train_tokens)
    assert any("token cache" in m and "checksum" in m and "rebuil" in m for m in logs), logs


def test_ids_beyond_the_vocabulary_are_never_trained_on(tmp_path):
    cfg = DataConfig(dataset=_corpus(tmp_path), tokenizer="byte", val_fraction=0.25)
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    _tampered(tmp_path, "val.npy", 60_000)
    meta_path = tmp_path / "run" / "data" / "meta.json"
    meta = json.loads(meta_path.read_text())  # a cache that vouches for itself, yet is wrong
    meta["sha1"] = pipeline._checksums(np.load(tmp_path / "run" / "data" / "train.npy"),
                                       np.load(tmp_path / "run" / "data" / "val.npy"))
    meta_path.write_text(json.dumps(meta))
    logs = []
    again = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    np.testing.assert_array_equal(again.val_tokens, first.val_tokens)
    assert any("60000" in m and "vocab" in m for m in logs), logs


def test_resuming_refuses_a_changed_corpus(tmp_path, monkeypatch):
    spec = _corpus(tmp_path)
    cfg = DataConfig(dataset=spec, tokenizer="byte", val_fraction=0.25)
    prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    prepare(cfg, str(tmp_path / "run"), log=lambda s: None, resuming=True)  # unchanged: fine
    (tmp_path / "corpus" / "f03.txt").write_text("edited under a running experiment")
    _no_reread(monkeypatch)
    with pytest.raises(ValueError) as e:
        prepare(cfg, str(tmp_path / "run"), log=lambda s: None, resuming=True)
    msg = str(e.value)
    assert "\n" not in msg and "the corpus of this run changed" in msg and "--workdir" in msg
    assert str(tmp_path / "corpus") in msg


@pytest.mark.parametrize("damage", ["missing model", "garbage spec", "spec without keys"])
def test_a_damaged_tokenizer_is_one_line(tmp_path, damage):
    cfg = DataConfig(dataset=_corpus(tmp_path, n=40), tokenizer="sentencepiece", vocab_size=300,
                     val_fraction=0.25)
    prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    tok_dir = tmp_path / "run" / "tokenizer"
    if damage == "missing model":
        os.remove(tok_dir / "tokenizer.model")
    elif damage == "garbage spec":
        (tok_dir / "tokenizer.json").write_bytes(b"\x00garbage{")
    else:
        (tok_dir / "tokenizer.json").write_text('{"kind": "sentencepiece"}')
    with pytest.raises(ValueError) as e:
        prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and f"the tokenizer in {tok_dir} is damaged" in msg
    assert "delete" in msg and "restore it" in msg


def test_a_full_disk_while_caching_the_tokens_is_one_line(tmp_path, monkeypatch):
    def no_space(f, arr):
        f.write(b"\x93NUMPY")  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(np, "save", no_space)
    cfg = DataConfig(dataset=_corpus(tmp_path), tokenizer="char", val_fraction=0.25)
    data = tmp_path / "run" / "data"
    with pytest.raises(UserError, match=f"cannot write {data / 'train.npy'}: the disk is full: free "
                                        "space") as e:
        prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert "\n" not in str(e.value)
    assert os.listdir(data) == []  # no partial file left to fill the disk, no meta.json vouching for one
