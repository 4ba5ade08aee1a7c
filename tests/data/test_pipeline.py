"""Token streams, the unigram baseline, prepare()'s cache, and stateless packed batches."""
import errno
import json
import math
import os

import numpy as np
import pytest

from llmjax.config import DataConfig, UserError
from llmjax.data import pipeline, preparation, token_cache
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


def test_an_eval_budget_visits_a_fixed_sample_of_rows():
    """A validation split larger than data.eval_tokens: the same random rows in every run (not
    the first ones), each once; a smaller split: every row, as before."""
    a = PackedBatches(_stream(), 10, 8, seed=1, shuffle=False, max_tokens=300)
    b = PackedBatches(_stream(), 10, 8, seed=2, shuffle=False, max_tokens=300)
    rows = np.concatenate([a.rows(i) for i in range(a.num_batches)])
    assert a.rows_visited == 30 and a.num_batches == 4
    real = rows[rows >= 0]
    assert len(real) == 30 and len(set(real.tolist())) == 30 and real.max() > 30
    np.testing.assert_array_equal(rows, np.concatenate([b.rows(i) for i in range(b.num_batches)]))
    np.testing.assert_array_equal(a.batch(1)["inputs"][0], _stream()[real[8] * 10:real[8] * 10 + 10])
    whole = PackedBatches(_stream(), 10, 8, shuffle=False, max_tokens=5000)
    assert whole.rows_visited == 100


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
    monkeypatch.setattr(preparation, "build", boom)


def _cfg(spec, **kw):
    return DataConfig(**{"dataset": spec, "tokenizer": "byte", "val_fraction": 0.25,
                         "num_workers": 1, **kw})


def _shard(tmp_path, split="train"):
    """The first non-empty token shard of a split in the run's prepared corpus."""
    manifest = json.loads((tmp_path / "run" / "data" / "manifest.json").read_text())
    entry = next(e for e in manifest["shards"][split] if e["tokens"])
    return tmp_path / "run" / "data" / entry["file"]


def test_prepare_builds_then_reuses_the_corpus(tmp_path, monkeypatch):
    cfg = _cfg(_corpus(tmp_path), tokenizer="char")
    logs = []
    first = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    assert first.train_tokens.dtype == np.uint16 and first.val_tokens.ndim == 1
    train, val = np.asarray(first.train_tokens), np.asarray(first.val_tokens)
    eos = first.tokenizer.eos_id
    assert (train == eos).sum() == first.stats["train_documents"]
    assert train[-1] == eos and val[-1] == eos
    assert first.stats["train_tokens"] == first.stats["train_chars"] + first.stats["train_documents"]
    assert first.unigram_loss == pytest.approx(unigram_loss(train, val, first.tokenizer.vocab_size))
    np.testing.assert_array_equal(first.unigram_counts,
                                  np.bincount(train, minlength=first.tokenizer.vocab_size))
    data = tmp_path / "run" / "data"
    assert {"manifest.json", "tokenizer", "tokens", "unigram.npy"} <= set(os.listdir(data))
    assert "work" not in os.listdir(data)  # the units' records go once the manifest vouches
    assert os.listdir(tmp_path / "run" / "tokenizer")  # the run keeps its own copy
    mtime = os.stat(_shard(tmp_path)).st_mtime_ns

    _no_reread(monkeypatch)
    again = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    assert "reusing" in logs[-1] and os.stat(_shard(tmp_path)).st_mtime_ns == mtime
    np.testing.assert_array_equal(np.asarray(again.train_tokens), train)
    np.testing.assert_array_equal(np.asarray(again.val_tokens), val)
    assert again.unigram_loss == first.unigram_loss and again.stats == first.stats
    assert again.tokenizer.fingerprint() == first.tokenizer.fingerprint()


def test_prepare_rebuilds_when_the_source_changes(tmp_path):
    spec = _corpus(tmp_path)
    cfg = _cfg(spec)
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    capped = prepare(_cfg(spec, max_train_chars=100), str(tmp_path / "run"), log=lambda s: None)
    assert capped.stats["train_chars"] == 100 and len(capped.train_tokens) < len(first.train_tokens)
    (tmp_path / "corpus" / "f00.txt").write_text("changed text, longer than before " * 10)
    changed = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert changed.stats["train_chars"] + changed.stats["val_chars"] != \
        first.stats["train_chars"] + first.stats["val_chars"]
    with pytest.raises(ValueError, match="is byte but config.data.tokenizer='char'"):
        prepare(_cfg(spec, tokenizer="char"), str(tmp_path / "run"))


def test_a_corpus_read_lossily_is_not_reused_by_a_strict_run(tmp_path):
    """decode_errors decides the documents: a strict run must not train on replace's U+FFFD."""
    spec = _corpus(tmp_path)
    (tmp_path / "corpus" / "f05.txt").write_bytes("caf\u00e9 latin-1".encode("latin-1"))
    logs = []
    lossy = prepare(_cfg(spec, decode_errors="replace"), str(tmp_path / "run"), log=logs.append)
    assert lossy.stats["replaced"] == 1 and lossy.stats["with_replacements"] == 1
    assert any("1 undecodable byte sequences read as U+FFFD in 1 of 12 documents" in m for m in logs)
    with pytest.raises(ValueError, match="f05.txt is not UTF-8 at byte 3"):
        prepare(_cfg(spec), str(tmp_path / "run"), log=lambda s: None)


@pytest.mark.parametrize("damage", ["short", "same length", "ids past the vocabulary"])
def test_a_damaged_corpus_in_the_run_is_rebuilt_not_trained_on(tmp_path, damage):
    cfg = _cfg(_corpus(tmp_path))
    first = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    shard = _shard(tmp_path, "val")
    ids = np.fromfile(shard, np.uint16)
    if damage == "short":
        shard.write_bytes(ids[:3].tobytes())
    elif damage == "same length":  # the size check passes it
        shard.write_bytes(np.full_like(ids, 7).tobytes())
    else:  # and the manifest vouches for it
        shard.write_bytes(np.full_like(ids, 60_000).tobytes())
        path = tmp_path / "run" / "data" / "manifest.json"
        manifest = json.loads(path.read_text())
        entry = next(e for e in manifest["shards"]["val"] if e["tokens"])
        entry["sha1"] = token_cache.file_sha1(str(shard))
        path.write_text(json.dumps(manifest))
    logs = []
    again = prepare(cfg, str(tmp_path / "run"), log=logs.append)
    np.testing.assert_array_equal(np.asarray(again.val_tokens), np.asarray(first.val_tokens))
    assert any("is damaged" in m and "rebuilding" in m for m in logs), logs


def test_a_shared_prepared_dir_is_never_rebuilt_silently(tmp_path):
    spec = _corpus(tmp_path)
    shared = tmp_path / "shared"
    a = prepare(_cfg(spec, prepared_dir=str(shared)), str(tmp_path / "a"), log=lambda s: None)
    b = prepare(_cfg(spec, prepared_dir=str(shared)), str(tmp_path / "b"), log=lambda s: None)
    assert b.train_tokens.paths == a.train_tokens.paths  # one corpus, read by both runs
    assert not os.path.exists(tmp_path / "b" / "data")
    with pytest.raises(ValueError, match="holds another corpus.*val_fraction: 0.25 -> 0.5"):
        prepare(_cfg(spec, prepared_dir=str(shared), val_fraction=0.5), str(tmp_path / "c"))
    os.remove(_shard_in(shared))
    with pytest.raises(token_cache.CacheError, match="is missing"):
        prepare(_cfg(spec, prepared_dir=str(shared)), str(tmp_path / "b"))


def _shard_in(directory):
    manifest = json.loads((directory / "manifest.json").read_text())
    return directory / next(e for e in manifest["shards"]["train"] if e["tokens"])["file"]


def test_prepare_stdlib_with_sentencepiece(tmp_path, monkeypatch):
    cfg = DataConfig(dataset="stdlib", tfds_data_dir=str(tmp_path / "tfds"),
                     tokenizer="sentencepiece", vocab_size=512, spm_train_chars=200_000,
                     max_train_chars=300_000, num_workers=1)
    p = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    assert p.stats["train_chars"] == 300_000 and p.stats["val_chars"] > 500_000
    assert 1.5 < p.stats["chars_per_token"] < 4
    assert 3.0 < p.unigram_loss < math.log(512)
    val = np.asarray(p.val_tokens)
    assert p.tokenizer.decode(val[:2000]).startswith(p.tokenizer.decode(val[:100]))
    _no_reread(monkeypatch)
    again = prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    np.testing.assert_array_equal(np.asarray(again.val_tokens), val)


def test_resuming_refuses_a_changed_corpus(tmp_path, monkeypatch):
    spec = _corpus(tmp_path)
    cfg = _cfg(spec)
    prepare(cfg, str(tmp_path / "run"), log=lambda s: None)
    prepare(cfg, str(tmp_path / "run"), log=lambda s: None, resuming=True)  # unchanged: fine
    (tmp_path / "corpus" / "f03.txt").write_text("edited under a running experiment")
    _no_reread(monkeypatch)
    with pytest.raises(ValueError) as e:
        prepare(cfg, str(tmp_path / "run"), log=lambda s: None, resuming=True)
    msg = str(e.value)
    assert "\n" not in msg and "the corpus of this run changed" in msg and "--workdir" in msg
    assert str(tmp_path / "corpus") in msg


def test_a_run_prepared_by_an_earlier_llmjax_resumes_on_its_own_tokens(tmp_path):
    """workdir/data/{train,val}.npy + meta.json (one stream a split) stay this run's data."""
    spec = _corpus(tmp_path)
    cfg = _cfg(spec)
    new = prepare(cfg, str(tmp_path / "new"), log=lambda s: None)
    tok = new.tokenizer
    train, val = np.asarray(new.train_tokens)[::-1].copy(), np.asarray(new.val_tokens)
    old = tmp_path / "old"
    (old / "data").mkdir(parents=True)
    tok.save(str(old / "tokenizer"))
    np.save(old / "data" / "train.npy", train)
    np.save(old / "data" / "val.npy", val)
    import hashlib
    meta = {"fingerprint": pipeline.fingerprint(pipeline.source_key(cfg, pipeline.LEGACY_FORMAT), tok),
            "stats": {"train_tokens": len(train)}, "unigram_loss": 1.5,
            "sha1": {n: hashlib.sha1(a.data).hexdigest() for n, a in (("train", train), ("val", val))}}
    (old / "data" / "meta.json").write_text(json.dumps(meta))
    p = prepare(cfg, str(old), log=lambda s: None, resuming=True)
    np.testing.assert_array_equal(np.asarray(p.train_tokens), train)
    assert p.unigram_loss == 1.5
    (tmp_path / "corpus" / "f03.txt").write_text("edited under a running experiment")
    with pytest.raises(ValueError, match="the corpus of this run changed"):
        prepare(cfg, str(old), log=lambda s: None, resuming=True)


@pytest.mark.parametrize("damage", ["missing model", "garbage spec", "spec without keys"])
def test_a_damaged_tokenizer_is_one_line(tmp_path, damage):
    cfg = _cfg(_corpus(tmp_path, n=40), tokenizer="sentencepiece", vocab_size=300)
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


def test_a_full_disk_while_writing_the_tokens_is_one_line(tmp_path, monkeypatch):
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            self.f.write(data[:3])  # part of it, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def full_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return Full(f) if "tokens" in str(path) and "w" in mode else f

    monkeypatch.setattr(preparation, "open", full_open, raising=False)
    data = tmp_path / "run" / "data"
    with pytest.raises(UserError, match=f"cannot write {data / 'tokens'}/.*: the disk is full: "
                                        "free space") as e:
        prepare(_cfg(_corpus(tmp_path), tokenizer="char"), str(tmp_path / "run"),
                log=lambda s: None)
    assert "\n" not in str(e.value)
    assert not any(".tmp" in n for n in os.listdir(data / "tokens"))  # nothing left to fill the disk
    assert "manifest.json" not in os.listdir(data)
