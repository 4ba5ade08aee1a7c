"""list_units / read_unit: every kind read unit by unit equals the whole read once; the faults;
tfds on tiny real builders; what needs the whole corpus (duplicates) through pipeline.prepare."""
import dataclasses
import gzip
import json
import os
import sys
import tracemalloc
import types

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds

from llmjax.config import ConfigError, DataConfig
from llmjax.data import pipeline, sources
from llmjax.data.sources import Unit, is_validation, list_units, read_unit


def _code_path(cls):
    """tfds's default lookup imports `importlib_resources`, absent on Python 3.9+."""
    from etils import epath
    return epath.Path(__file__)


class LlmjaxTestSplits(tfds.core.GeneratorBasedBuilder):
    """train / validation / test, text in `content` (with CRLF and a repeat), a label."""
    VERSION = tfds.core.Version("1.0.0")
    code_path = tfds.core.utils.classproperty(classmethod(_code_path))

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "content": tfds.features.Text(), "label": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train", 30),
                "validation": self._generate_examples("validation", 4),
                "test": self._generate_examples("test", 3)}

    def _generate_examples(self, split, n):
        for i in range(n):
            text = f"{split} doc {i}\r\nsecond line é"
            if split == "train" and i == 29:
                text = "train doc 0\r\nsecond line é"  # an exact repeat of doc 0
            if split == "train" and i == 28:
                text = "  \n\t"
            yield i, {"content": text, "label": i}


class LlmjaxTestLatin1(tfds.core.GeneratorBasedBuilder):
    """A Text feature holding raw latin-1 bytes (tfds stores a builder's bytes as given)."""
    VERSION = tfds.core.Version("1.0.0")
    code_path = tfds.core.utils.classproperty(classmethod(_code_path))

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train"),
                "validation": self._generate_examples("validation")}

    def _generate_examples(self, split):
        yield 0, {"text": f"{split} caf\u00e9 one"}
        encoding = "latin-1" if split == "train" else "utf-8"
        yield 1, {"text": f"{split} caf\u00e9 two".encode(encoding)}


class LlmjaxTestNoValidation(tfds.core.GeneratorBasedBuilder):
    VERSION = tfds.core.Version("1.0.0")
    code_path = tfds.core.utils.classproperty(classmethod(_code_path))

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "text": tfds.features.Text()}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples(5), "test": self._generate_examples(2)}

    def _generate_examples(self, n):
        for i in range(n):
            yield i, {"text": f"doc {i} of {n}"}


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    for cls in (LlmjaxTestSplits, LlmjaxTestNoValidation, LlmjaxTestLatin1):
        cls(data_dir=root).download_and_prepare(file_format="array_record")
    return root


def _read_all(cfg, target_bytes):
    """(units, [(split, key, text)], counts) of the corpus read unit by unit, in unit order."""
    units = list_units(cfg, target_bytes=target_bytes)
    assert [u.index for u in units] == list(range(len(units)))
    counts, docs = {}, []
    for u in units:
        docs += [(u.split, k, t) for k, t in read_unit(u, cfg, counts)]
    return units, docs, counts


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data.encode("utf-8") if isinstance(data, str) else data)


def _fails(match, fn, *args):
    with pytest.raises(ValueError, match=match) as e:
        out = fn(*args)
        if not isinstance(out, list):
            list(out)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- text:


def _lines(n, tag=""):
    return "".join(f"{tag}line {i} é {'x' * (i % 7)}\r\n" for i in range(n))


def test_text_one_unit_per_file_tail_split_by_bytes(tmp_path):
    _write(f"{tmp_path}/a.txt", "A" * 50)
    _write(f"{tmp_path}/b.txt", "B" * 30)
    _write(f"{tmp_path}/c.txt", "C" * 20)
    cfg = DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.3)
    units, docs, counts = _read_all(cfg, 1 << 20)
    assert [(u.path[-5:], u.start, u.stop, u.split) for u in units] == [
        ("a.txt", 0, -1, "train"), ("b.txt", 0, 20, "train"), ("b.txt", 20, 30, "val"),
        ("c.txt", 0, -1, "val")]  # the cut (70 bytes) in b.txt, with no line end near it
    assert [(s, t) for s, _, t in docs] == [("train", "A" * 50), ("train", "B" * 20),
                                            ("val", "B" * 10), ("val", "C" * 20)]
    assert counts == {"documents_read": 4, "empty_dropped": 0}


def test_text_many_units_per_file_cut_at_line_ends(tmp_path):
    text = _lines(300)
    _write(f"{tmp_path}/big.txt", text)
    cfg = DataConfig(dataset=f"text:{tmp_path}/big.txt", val_fraction=0.1)
    units, docs, _ = _read_all(cfg, 400)
    assert len(units) > 10 and sum(u.size for u in units) == len(text.encode())
    clean = text.replace("\r\n", "\n")
    assert all(t.endswith("\n") for _, _, t in docs)  # every cut at a line end
    assert "".join(t for _, _, t in docs) == clean
    train = "".join(t for s, _, t in docs if s == "train").encode()
    cut = int(len(text.encode()) * 0.9)
    assert abs((len(train) + train.count(b"\n")) - cut) < 200  # near the 90% byte (CRLF read as LF)
    splits = [s for s, _, _ in docs]
    assert splits == sorted(splits, key=lambda s: s == "val") and "val" in splits
    whole = _read_all(cfg, 1 << 30)[1]
    assert [t for s, _, t in whole if s == "train"] == [train.decode()]


def test_text_ten_files_split_by_path_hash_every_piece_with_its_file(tmp_path):
    files = {f"d{i % 3}/f{i:02d}.txt": _lines(20 + i, tag=f"{i}:") for i in range(30)}
    for rel, text in files.items():
        _write(f"{tmp_path}/{rel}", text)
    cfg = DataConfig(dataset=f"text:{tmp_path}/**/*.txt", val_fraction=0.3)
    units, docs, _ = _read_all(cfg, 300)
    assert len(units) > 2 * len(files)
    got = {}
    for split, key, text in docs:
        rel = key.split("@")[0]
        assert split == ("val" if is_validation(rel, 0.3) else "train")
        got[rel] = got.get(rel, "") + text
    assert got == {rel: t.replace("\r\n", "\n") for rel, t in files.items()}
    splits = [u.split for u in units]
    assert "val" in splits and splits == sorted(splits, key=lambda s: s == "val")


@pytest.mark.parametrize("files, kw, match", [
    ({}, dict(), "matches no files"),
    ({"a.txt": "", "b.txt": ""}, dict(), "corpus is empty"),
    ({"a.txt": "a"}, dict(val_fraction=1e-17), "validation split is empty"),
    ({"a.txt": "a"}, dict(val_fraction=0.5), "training split is empty"),
])
def test_text_list_errors(tmp_path, files, kw, match):
    for rel, text in files.items():
        _write(f"{tmp_path}/{rel}", text)
    _fails(match, list_units, DataConfig(dataset=f"text:{tmp_path}/*.txt", **kw))


def test_text_not_utf8_names_file_and_byte_or_counts(tmp_path):
    _write(f"{tmp_path}/a.txt", "plain\n" * 40 + "na\u00efve\n")
    _write(f"{tmp_path}/b.txt", "na\u00efve caf\u00e9\n".encode("latin-1"))
    cfg = DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.1)
    units = list_units(cfg, target_bytes=100)
    msg = _fails("not UTF-8", lambda: [d for u in units for d in read_unit(u, cfg, {})])
    assert f"{tmp_path}/b.txt" in msg and "byte 2 (0xef)" in msg and "decode_errors=replace" in msg
    assert f"iconv -f LATIN1 -t UTF-8 {tmp_path}/b.txt" in msg
    counts = {}
    lossy = DataConfig(**{**cfg.__dict__, "decode_errors": "replace"})
    texts = [t for u in units for _, t in read_unit(u, lossy, counts)]
    assert "na\ufffdve caf\ufffd\n" in texts and "na\u00efve\n" in "".join(texts)
    assert (counts["replaced"], counts["with_replacements"]) == (2, 1)


def test_text_hash_split_holding_out_nothing_falls_back_to_the_tail(tmp_path):
    names = [f"f{i}.txt" for i in range(200) if not is_validation(f"f{i}.txt", 0.01)][:12]
    texts = {name: f"{k:010d}" for k, name in enumerate(names)}
    for name, text in texts.items():
        _write(f"{tmp_path}/{name}", text)
    cfg = DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.01)
    _, docs, _ = _read_all(cfg, 1 << 20)
    corpus = "".join(texts[n] for n in sorted(names))  # the files in path order
    assert [t for s, _, t in docs if s == "val"] == [corpus[118:]]  # 120 - int(120 * 0.99) bytes
    assert "".join(t for s, _, t in docs if s == "train") == corpus[:118]


def _prepare(cfg, tmp_path):
    cfg = dataclasses.replace(cfg, tokenizer="byte", num_workers=1)
    return pipeline.prepare(cfg, str(tmp_path / "run"), log=lambda s: None)


def test_newlines_blanks_and_repeats_are_cleaned_and_counted(tmp_path):
    files = {"1.txt": "a\r\nb\rc", "2.txt": "  \n\t", "3.txt": "a\nb\nc", "4.txt": "",
             "5.txt": "other"}
    for name, text in files.items():
        _write(f"{tmp_path}/c/{name}", text)
    cfg = DataConfig(dataset=f"text:{tmp_path}/c/*.txt", val_fraction=0.5)
    _, docs, counts = _read_all(cfg, 1 << 20)
    assert [t for _, _, t in docs] == ["a\nb\nc", "a\nb\nc", "other"]
    assert counts == {"documents_read": 5, "empty_dropped": 2}
    s = _prepare(cfg, tmp_path).stats  # the repeat (3.txt, in val) goes with the whole corpus
    assert (s["documents_read"], s["empty_dropped"], s["duplicates_dropped"]) == (5, 2, 1)
    assert (s["train_chars"], s["val_chars"]) == (5, 5)


def test_a_corpus_of_blank_files_is_refused_in_one_line(tmp_path):
    _write(f"{tmp_path}/c/a.txt", " \n")
    _write(f"{tmp_path}/c/b.txt", "\t\r\n")
    cfg = DataConfig(dataset=f"text:{tmp_path}/c/*.txt", val_fraction=0.5)
    _fails("the training split has no text", _prepare, cfg, tmp_path)


def test_decode_errors_is_a_choice():
    with pytest.raises(ConfigError, match="config.data.decode_errors='ignore': must be one of "
                                          "strict, replace"):
        DataConfig(decode_errors="ignore").validate()


# ---------------------------------------------------------------- jsonl:


def _records(n, tag):
    return [{"id": i, "text": f"{tag} doc {i}\r\n" + "é" * (i % 5)} for i in range(n)]


def _jsonl(records):
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


@pytest.fixture
def jsonl_corpus(tmp_path):
    a, b, c, d = (_records(40, t) for t in "abcd")
    b[3]["text"] = "   "  # blank: dropped, counted
    _write(f"{tmp_path}/a.jsonl", _jsonl(a))
    _write(f"{tmp_path}/b.jsonl", "\n" + _jsonl(b))  # a blank line is no record
    _write(f"{tmp_path}/c.jsonl.gz", gzip.compress(_jsonl(c).encode()))
    with pa.CompressedOutputStream(str(tmp_path / "d.jsonl.zst"), "zstd") as f:
        f.write(_jsonl(d).encode())
    expected = [r["text"].replace("\r\n", "\n") for r in a + b + c + d if r["text"].strip()]
    return DataConfig(dataset=f"jsonl:{tmp_path}/*.jsonl*"), expected


@pytest.mark.parametrize("target", [1, 13, 64, 500, 1 << 30])
def test_jsonl_units_read_every_line_once(jsonl_corpus, target):
    cfg, expected = jsonl_corpus
    units, docs, counts = _read_all(cfg, target)
    assert [t for _, _, t in docs] == expected
    assert {s for s, _, _ in docs} == {""} and counts == {"documents_read": 160, "empty_dropped": 1}
    per_file = [sum(u.path == p for u in units) for p in sorted({u.path for u in units})]
    if target >= 1 << 30:
        assert per_file == [1, 1, 1, 1]
    else:
        assert per_file[0] > 1 and per_file[1] > 1 and per_file[2:] == [1, 1]  # compressed: one
    assert len({k for _, k, _ in docs}) == len(docs)


@pytest.mark.parametrize("line, match", [
    ('{"text": "ok"', "not valid JSON"),
    ('{"body": "no text"}', "no key 'text'.*text_key"),
    ('{"text": 5}', "'text' holds int, not a string"),
    ('["text"]', "not a JSON object"),
])
def test_jsonl_bad_lines_name_file_and_offset(tmp_path, line, match):
    _write(f"{tmp_path}/x.jsonl", '{"text": "fine"}\n' + line + "\n")
    cfg = DataConfig(dataset=f"jsonl:{tmp_path}/x.jsonl")
    units = list_units(cfg, target_bytes=5)
    msg = _fails(match, lambda: [d for u in units for d in read_unit(u, cfg, {})])
    assert f"{tmp_path}/x.jsonl at byte 17" in msg  # read by the unit from byte 15
    whole = list_units(cfg, target_bytes=100)
    assert f"{tmp_path}/x.jsonl line 2 (byte 17)" in _fails(match, read_unit, whole[0], cfg, {})
    _write(f"{tmp_path}/y.jsonl.gz", gzip.compress(('{"text": "fine"}\n' + line + "\n").encode()))
    cfg = DataConfig(dataset=f"jsonl:{tmp_path}/y.jsonl.gz")
    msg = _fails(match, read_unit, list_units(cfg)[0], cfg, {})
    assert f"{tmp_path}/y.jsonl.gz line 2" in msg


def test_jsonl_not_utf8_is_refused_or_counted(tmp_path):
    _write(f"{tmp_path}/x.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    cfg = DataConfig(dataset=f"jsonl:{tmp_path}/x.jsonl")
    msg = _fails("not UTF-8", read_unit, list_units(cfg)[0], cfg, {})
    assert f"{tmp_path}/x.jsonl is not UTF-8 at byte 28 (0xe9)" in msg
    assert "decode_errors=replace" in msg
    counts = {}
    lossy = DataConfig(dataset=cfg.dataset, decode_errors="replace")
    assert [t for _, t in read_unit(list_units(cfg)[0], lossy, counts)] == ["ok", "caf\ufffd"]
    assert (counts["replaced"], counts["with_replacements"]) == (1, 1)


@pytest.mark.parametrize("suffix", ["gz", "zst"])
def test_truncated_compressed_jsonl_names_file(tmp_path, suffix):
    data = _jsonl(_records(3000, "t")).encode()
    path = tmp_path / f"x.jsonl.{suffix}"
    if suffix == "gz":
        raw = gzip.compress(data)
    else:
        raw = pa.compress(data, "zstd", asbytes=True)  # one frame, as zstd's CLI writes
    _write(str(path), raw[:len(raw) // 2])
    cfg = DataConfig(dataset=f"jsonl:{path}")
    msg = _fails("truncated or corrupt", read_unit, list_units(cfg)[0], cfg, {})
    assert str(path) in msg


def test_vanished_file_names_it(tmp_path):
    for kind, name in (("text", "a.txt"), ("jsonl", "a.jsonl")):
        _write(f"{tmp_path}/{name}", '{"text": "x"}\n')
        cfg = DataConfig(dataset=f"{kind}:{tmp_path}/{name}", val_fraction=0.5)
        units = list_units(cfg)
        os.remove(tmp_path / name)
        msg = _fails("cannot read", read_unit, units[0], cfg, {})
        assert f"{tmp_path}/{name}" in msg
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "p.parquet")
    cfg = DataConfig(dataset=f"parquet:{tmp_path}/p.parquet")
    units = list_units(cfg)
    os.remove(tmp_path / "p.parquet")
    assert f"{tmp_path}/p.parquet" in _fails("cannot read", read_unit, units[0], cfg, {})


def test_jsonl_memory_stays_small(tmp_path):
    line = json.dumps({"text": "word " * 200}) + "\n"
    path = tmp_path / "big.jsonl"
    with open(path, "w") as f:
        for _ in range(20_000_000 // len(line)):
            f.write(line)
    cfg = DataConfig(dataset=f"jsonl:{path}")
    unit, = list_units(cfg, target_bytes=1 << 30)
    tracemalloc.start()
    n = sum(1 for _ in read_unit(unit, cfg, {}))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert n == 20_000_000 // len(line) and peak < 5 << 20


# ---------------------------------------------------------------- parquet: and hf_disk:


def test_parquet_units_of_row_groups(tmp_path):
    texts = [f"row {i}\r\nsecond" for i in range(95)] + [None, "  "]
    pq.write_table(pa.table({"id": list(range(97)), "text": texts}), tmp_path / "a.parquet",
                   row_group_size=10)
    pq.write_table(pa.table({"text": ["last one"]}), tmp_path / "b.parquet")
    cfg = DataConfig(dataset=f"parquet:{tmp_path}/*.parquet")
    expected = [t.replace("\r\n", "\n") for t in texts[:95]] + ["last one"]
    units, docs, counts = _read_all(cfg, 300)
    assert sum(u.path.endswith("a.parquet") for u in units) > 2
    assert [t for _, _, t in docs] == expected and {s for s, _, _ in docs} == {""}
    assert counts == {"documents_read": 98, "empty_dropped": 2}
    assert [t for _, _, t in _read_all(cfg, 1 << 30)[1]] == expected


def test_parquet_without_the_text_column(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "a.parquet")
    msg = _fails("no column 'text'.*body.*text_key", list_units,
                 DataConfig(dataset=f"parquet:{tmp_path}/*.parquet"))
    assert f"{tmp_path}/a.parquet" in msg
    pq.write_table(pa.table({"text": [1]}), tmp_path / "a.parquet")
    _fails("not a string", list_units, DataConfig(dataset=f"parquet:{tmp_path}/*.parquet"))


def _save_to_disk(path, batches_of_texts, extra=None):
    """A `datasets` Dataset directory as save_to_disk writes it: Arrow IPC stream files."""
    os.makedirs(path)
    names = []
    for i, batches in enumerate(batches_of_texts):
        name = f"data-{i:05d}-of-{len(batches_of_texts):05d}.arrow"
        schema = pa.schema([("text", pa.string()), (extra or "id", pa.int64())])
        with pa.OSFile(os.path.join(path, name), "wb") as f, pa.ipc.new_stream(f, schema) as w:
            for texts in batches:
                w.write_batch(pa.record_batch([texts, list(range(len(texts)))], schema=schema))
        names.append({"filename": name})
    with open(os.path.join(path, "state.json"), "w") as f:
        json.dump({"_data_files": names, "_split": None, "_fingerprint": "x"}, f)
    with open(os.path.join(path, "dataset_info.json"), "w") as f:
        json.dump({"features": {"text": {"dtype": "string", "_type": "Value"}}}, f)


def test_hf_disk_dataset_and_dataset_dict(tmp_path):
    files = [[[f"f{f} b{b} r{r}" for r in range(7)] for b in range(4)] for f in range(2)]
    _save_to_disk(str(tmp_path / "one"), files)
    expected = [t for f in files for b in f for t in b]
    cfg = DataConfig(dataset=f"hf_disk:{tmp_path}/one")
    units, docs, _ = _read_all(cfg, 150)
    assert len(units) > 2 and [t for _, _, t in docs] == expected
    assert {s for s, _, _ in docs} == {""} and units[0].kind == "arrow"
    assert [t for _, _, t in _read_all(cfg, 1 << 30)[1]] == expected

    with open(tmp_path / "dataset_dict.json", "w") as f:
        json.dump({"splits": ["train", "test", "validation"]}, f)
    for split in ("train", "test", "validation"):
        _save_to_disk(str(tmp_path / split), [[[f"{split} {i}" for i in range(5)]] * 2])
    cfg = DataConfig(dataset=f"hf_disk:{tmp_path}")
    units, docs, _ = _read_all(cfg, 60)
    assert [(s, t) for s, _, t in docs] == [("train", f"train {i}") for i in range(5)] * 2 + [
        ("val", f"validation {i}") for i in range(5)] * 2
    test = DataConfig(dataset=cfg.dataset, eval_split="test")
    assert {t.split()[0] for _, _, t in _read_all(test, 60)[1]} == {"train", "test"}
    _fails("no split 'dev'.*train, test, validation", list_units,
           DataConfig(dataset=cfg.dataset, train_split="dev"))


def test_hf_disk_errors(tmp_path):
    _save_to_disk(str(tmp_path / "d"), [[["x"]]], extra="body")
    _fails("no column 'content'", list_units,
           DataConfig(dataset=f"hf_disk:{tmp_path}/d", text_key="content"))
    _fails("not a Hugging Face dataset saved with save_to_disk", list_units,
           DataConfig(dataset=f"hf_disk:{tmp_path}"))


def test_unknown_kind():
    _fails("must be stdlib, tfds:NAME.*jsonl:GLOB", list_units, DataConfig(dataset="hub:x"))


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_empty_corpus_and_no_match(tmp_path, kind):
    _fails("matches no files", list_units, DataConfig(dataset=f"{kind}:{tmp_path}/*.x"))
    _write(f"{tmp_path}/a.x", "")
    _fails("corpus is empty", list_units, DataConfig(dataset=f"{kind}:{tmp_path}/*.x"))


# ---------------------------------------------------------------- tfds: and stdlib


def test_tfds_record_ranges(tfds_dir):
    cfg = DataConfig(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir,
                     text_key="content")
    units, docs, counts = _read_all(cfg, 100)
    assert sum(u.split == "train" for u in units) > 3
    assert [u.split for u in units] == sorted(u.split for u in units)  # train before val
    assert {u.path for u in units} == {"llmjax_test_splits"}
    whole = _read_all(cfg, 1 << 30)
    assert len(whole[0]) == 2 and whole[1] == docs
    assert sorted(t for s, _, t in docs if s == "val") == [
        f"validation doc {i}\nsecond line é" for i in range(4)]
    assert counts == {"documents_read": 34, "empty_dropped": 1}


def test_tfds_eval_splits_and_whole_corpus_counts(tfds_dir, tmp_path):
    cfg = DataConfig(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir,
                     text_key="content")
    s = _prepare(cfg, tmp_path).stats  # train's repeat of doc 0 goes with the whole corpus
    assert (s["documents_read"], s["empty_dropped"], s["duplicates_dropped"]) == (34, 1, 1)
    assert (s["train_documents"], s["val_documents"]) == (28, 4)
    test = dataclasses.replace(cfg, eval_split="test")
    assert sorted(t for s, _, t in _read_all(test, 1 << 30)[1] if s == "val") == [
        f"test doc {i}\nsecond line é" for i in range(3)]
    no_val = DataConfig(dataset="tfds:llmjax_test_no_validation", tfds_data_dir=tfds_dir)
    assert sorted(t for s, _, t in _read_all(no_val, 1 << 30)[1] if s == "val") == [
        "doc 0 of 2", "doc 1 of 2"]  # no validation split: test
    assert "tensorflow" not in sys.modules  # array_record is read without TensorFlow


def test_tfds_errors(tfds_dir, tmp_path):
    msg = _fails("not prepared", list_units,
                 DataConfig(dataset="tfds:llmjax_test_splits", tfds_data_dir=str(tmp_path)))
    assert f"tfds build llmjax_test_splits --data_dir {tmp_path}" in msg
    msg = _fails("tfds cannot find it", list_units,
                 DataConfig(dataset="tfds:no_such_dataset_xyz", tfds_data_dir=str(tmp_path)))
    assert "tfds build no_such_dataset_xyz" in msg
    cfg = DataConfig(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir, text_key="content")
    _fails("text_key='body'.*available: content, label", list_units,
           dataclasses.replace(cfg, text_key="body"))
    label = dataclasses.replace(cfg, text_key="label")
    _fails("text_key='label'.*not text", read_unit, list_units(label)[0], label, {})
    _fails("train_split='dev'.*available: train, validation, test", list_units,
           dataclasses.replace(cfg, train_split="dev"))


def test_tfds_text_that_is_not_utf8_is_refused_or_counted(tfds_dir):
    cfg = DataConfig(dataset="tfds:llmjax_test_latin1", tfds_data_dir=tfds_dir)
    units = list_units(cfg)
    msg = _fails("not UTF-8", lambda: [d for u in units for d in read_unit(u, cfg, {})])
    assert "llmjax_test_latin1 train[1] feature 'text'" in msg and "byte 9 (0xe9)" in msg
    assert "--config.data.decode_errors=replace" in msg
    _, docs, counts = _read_all(dataclasses.replace(cfg, decode_errors="replace"), 1 << 30)
    assert [t for s, _, t in docs if s == "train"] == ["train caf\u00e9 one", "train caf\ufffd two"]
    assert (counts["replaced"], counts["with_replacements"]) == (1, 1)


def test_tfrecord_without_tensorflow_says_what_to_do(monkeypatch):
    from tensorflow_datasets.core import file_adapters
    info = types.SimpleNamespace(file_format=file_adapters.FileFormat.TFRECORD,
                                 alternative_file_formats=[], full_name="lm1b/1.1.0")
    builder = types.SimpleNamespace(info=info, name="lm1b")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails like it would here
    with pytest.raises(ValueError, match="pip install tensorflow.*--file_format=array_record"):
        next(sources.read_records(builder, "train"))


def test_stdlib_units_cover_both_splits_and_every_document(tmp_path):
    cfg = DataConfig(dataset="stdlib", tfds_data_dir=str(tmp_path))
    units = list_units(cfg, target_bytes=1 << 20)
    builder = sources._open_tfds(cfg)[0]
    for split, name in (("train", "train"), ("val", "validation")):
        mine = [u for u in units if u.split == split]
        assert mine[0].start == 0 and all(a.stop == b.start for a, b in zip(mine, mine[1:]))
        assert mine[-1].stop == builder.info.splits[name].num_examples and len(mine) > 1
    assert units[0].path == "stdlib" and units[0].kind == "tfds"
    first = [t for _, t in read_unit(units[1], cfg, {})]
    records = list(sources.read_records(builder, "train"))[units[1].start:units[1].stop]
    texts = [sources.as_text(r["text"], "text").replace("\r\n", "\n") for _, r in records]
    assert first == [t for t in texts if t.strip()]
    assert os.path.isdir(tmp_path / "llmjax_stdlib")  # built under tfds_data_dir
    counts, train, val = {}, [], []
    for u in units:
        (train if u.split == "train" else val).extend(t for _, t in read_unit(u, cfg, counts))
    assert len(train) > 1000 and len(val) > 20
    assert counts["documents_read"] == len(train) + len(val) + counts["empty_dropped"]
    assert not any("\r" in t for t in train + val)


def test_units_pickle():
    import pickle
    u = Unit(index=3, kind="jsonl", path="/x", start=5, stop=9, split="", size=4)
    assert pickle.loads(pickle.dumps(u)) == u


def test_a_file_that_is_not_parquet_or_arrow_names_it(tmp_path):
    pq.write_table(pa.table({"text": ["x"]}), tmp_path / "a.parquet")
    _write(f"{tmp_path}/b.parquet", "not parquet")
    msg = _fails("is not a Parquet file", list_units,
                 DataConfig(dataset=f"parquet:{tmp_path}/*.parquet"))
    assert f"{tmp_path}/b.parquet" in msg
    _save_to_disk(str(tmp_path / "d"), [[["x"]]])
    _write(f"{tmp_path}/d/data-00000-of-00001.arrow", "not arrow")
    _fails("is not an Arrow stream file", list_units, DataConfig(dataset=f"hf_disk:{tmp_path}/d"))


@pytest.mark.parametrize("spec, match", [
    ("jsonl:{}/*.jsonl", "matches no files"), ("parquet:{}/*.parquet", "matches no files"),
    ("hf_disk:{}/none", "no such directory"), ("csv:{}/x", "must be stdlib.*hf_disk:DIR"),
])
def test_config_checks_the_new_kinds(tmp_path, spec, match):
    from llmjax.config import ConfigError
    with pytest.raises(ConfigError, match=match):
        DataConfig(dataset=spec.format(tmp_path)).validate()
