"""load_documents: text: split rules, cleaning, caps, tfds (a tiny real builder) and stdlib."""
import os
import sys
import types

import numpy as np
import pytest
import tensorflow_datasets as tfds

from llmjax.config import ConfigError, DataConfig
from llmjax.data import sources
from llmjax.data.sources import is_validation, load_documents


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


def _write(root, files):
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def _quiet(cfg):
    lines = []
    return load_documents(cfg, log=lines.append), lines


# ---------------------------------------------------------------- text:


def test_single_file_tail_split_is_nanogpt_convention(tmp_path):
    text = "".join(chr(ord("a") + i % 26) for i in range(1001))
    _write(tmp_path, {"input.txt": text})
    docs, lines = _quiet(DataConfig(dataset=f"text:{tmp_path}/input.txt", val_fraction=0.1))
    assert docs.train == [text[:900]] and docs.val == [text[900:]]  # int(1001 * 0.9) = 900
    assert docs.stats["train_chars"] == 900 and docs.stats["val_chars"] == 101
    assert len(lines) == 1


def test_few_files_cut_the_concatenation_keeping_documents(tmp_path):
    _write(tmp_path, {"a.txt": "A" * 50, "b.txt": "B" * 30, "c.txt": "C" * 20})
    docs, _ = _quiet(DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.3))
    assert docs.train == ["A" * 50, "B" * 20] and docs.val == ["B" * 10, "C" * 20]


def test_many_files_split_by_path_hash_recursively(tmp_path):
    files = {f"d{i % 3}/sub/f{i:02d}.txt": f"file {i}\n" for i in range(40)}
    _write(tmp_path / "one", files)
    _write(tmp_path / "two", files)
    docs, _ = _quiet(DataConfig(dataset=f"text:{tmp_path}/one/**/*.txt", val_fraction=0.3))
    expected_val = sorted(t for rel, t in files.items() if is_validation(rel, 0.3))
    assert 0 < len(expected_val) < 40
    assert sorted(docs.val) == expected_val
    assert sorted(docs.train + docs.val) == sorted(files.values())
    moved, _ = _quiet(DataConfig(dataset=f"text:{tmp_path}/two/**/*.txt", val_fraction=0.3))
    assert moved.val == docs.val  # paths are hashed relative to the glob's root


def test_hash_split_without_validation_falls_back_to_tail(tmp_path):
    names = [f"f{i}.txt" for i in range(200) if not is_validation(f"f{i}.txt", 0.01)][:12]
    _write(tmp_path, {n: f"{k:010d}" for k, n in enumerate(names)})
    docs, lines = _quiet(DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.01))
    assert sum(map(len, docs.val)) == 120 - int(120 * 0.99) == 2
    assert any("instead" in line for line in lines)


def test_cleaning_counts_and_newlines(tmp_path):
    _write(tmp_path, {"1.txt": "a\r\nb\rc", "2.txt": "  \n\t", "3.txt": "a\nb\nc", "4.txt": "",
                      "5.txt": "other"})
    docs, lines = _quiet(DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.5))
    s = docs.stats
    assert (s["documents_read"], s["empty_dropped"], s["duplicates_dropped"]) == (5, 2, 1)
    assert "".join(docs.train + docs.val) == "a\nb\ncother"
    assert "2 empty and 1 duplicate" in lines[-1]


def test_max_train_chars_truncates_the_last_document(tmp_path):
    _write(tmp_path, {f"f{i:02d}.txt": f"{i:02d}" * 50 for i in range(30)})
    cfg = DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.2, max_train_chars=250)
    docs, lines = _quiet(cfg)
    full, _ = _quiet(DataConfig(dataset=cfg.dataset, val_fraction=0.2))
    assert docs.stats["train_chars"] == 250 and docs.stats["train_capped"]
    assert docs.train == full.train[:2] + [full.train[2][:50]]
    assert docs.val == full.val
    assert "capped" in lines[-1]


@pytest.mark.parametrize("files, cfg, match", [
    ({}, dict(), "matches no files"),
    ({"a.txt": " \n", "b.txt": ""}, dict(), "corpus is empty"),
    ({"a.txt": "a"}, dict(val_fraction=1e-17), "validation split is empty"),
    ({"a.txt": "a"}, dict(val_fraction=0.5), "training split is empty"),
])
def test_text_errors_are_one_line(tmp_path, files, cfg, match):
    _write(tmp_path, files)
    with pytest.raises(ValueError, match=match) as e:
        load_documents(DataConfig(dataset=f"text:{tmp_path}/*.txt", **cfg), log=lambda s: None)
    assert "\n" not in str(e.value)


def test_a_file_that_is_not_utf8_is_refused_naming_file_and_byte(tmp_path):
    _write(tmp_path, {"a.txt": "plain ascii\n"})
    (tmp_path / "b.txt").write_bytes("na\u00efve caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ValueError) as e:
        load_documents(DataConfig(dataset=f"text:{tmp_path}/*.txt"), log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and f"{tmp_path}/b.txt" in msg and "byte 2 (0xef)" in msg
    assert "iconv" in msg and "--config.data.decode_errors=replace" in msg


def test_decode_errors_replace_reads_lossily_and_counts(tmp_path):
    _write(tmp_path, {"a.txt": "kept \ufffd as written\n"})  # a real U+FFFD is not counted
    (tmp_path / "b.txt").write_bytes("na\u00efve caf\u00e9\n".encode("latin-1"))
    (tmp_path / "c.txt").write_bytes(b"\xff\xfe binary")
    docs, lines = _quiet(DataConfig(dataset=f"text:{tmp_path}/*.txt", val_fraction=0.3,
                                    decode_errors="replace"))
    assert "na\ufffdve caf\ufffd\n" in "".join(docs.train + docs.val)
    assert [l for l in lines if "U+FFFD" in l] == [
        f"data text:{tmp_path}/*.txt: decode_errors=replace: 4 undecodable byte sequences "
        "read as U+FFFD in 2 of 3 files"]


def test_decode_errors_is_a_choice():
    with pytest.raises(ConfigError, match="config.data.decode_errors='ignore': must be one of "
                                          "strict, replace"):
        DataConfig(decode_errors="ignore").validate()


def test_unknown_dataset_kind():
    with pytest.raises(ValueError, match="must be stdlib, tfds:NAME"):
        load_documents(DataConfig(dataset="hub:foo"))


# ---------------------------------------------------------------- tfds:


def test_tfds_reads_prepared_array_record(tfds_dir):
    cfg = DataConfig(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir, text_key="content")
    docs, _ = _quiet(cfg)
    assert sorted(docs.val) == sorted(f"validation doc {i}\nsecond line é" for i in range(4))
    assert sorted(docs.train) == sorted(f"train doc {i}\nsecond line é" for i in range(28))
    s = docs.stats
    assert (s["documents_read"], s["empty_dropped"], s["duplicates_dropped"]) == (34, 1, 1)
    test, _ = _quiet(DataConfig(**{**cfg.__dict__, "eval_split": "test"}))
    assert sorted(test.val) == sorted(f"test doc {i}\nsecond line é" for i in range(3))
    assert "tensorflow" not in sys.modules


def test_tfds_eval_split_defaults_to_test_without_validation(tfds_dir):
    docs, _ = _quiet(DataConfig(dataset="tfds:llmjax_test_no_validation", tfds_data_dir=tfds_dir))
    assert sorted(docs.val) == ["doc 0 of 2", "doc 1 of 2"]


def test_tfds_errors(tfds_dir, tmp_path):
    def err(**kw):
        with pytest.raises(ValueError) as e:
            load_documents(DataConfig(**kw), log=lambda s: None)
        assert "\n" not in str(e.value)
        return str(e.value)
    msg = err(dataset="tfds:llmjax_test_splits", tfds_data_dir=str(tmp_path))
    assert "not prepared" in msg and f"tfds build llmjax_test_splits --data_dir {tmp_path}" in msg
    msg = err(dataset="tfds:no_such_dataset_xyz", tfds_data_dir=str(tmp_path))
    assert "tfds build no_such_dataset_xyz" in msg
    msg = err(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir, text_key="body")
    assert "available: content, label" in msg
    msg = err(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir, text_key="label")
    assert "not text" in msg
    msg = err(dataset="tfds:llmjax_test_splits", tfds_data_dir=tfds_dir, text_key="content",
              train_split="dev")
    assert "available: train, validation, test" in msg


def test_tfds_text_that_is_not_utf8_is_refused_or_counted(tfds_dir):
    cfg = DataConfig(dataset="tfds:llmjax_test_latin1", tfds_data_dir=tfds_dir)
    with pytest.raises(ValueError) as e:
        load_documents(cfg, log=lambda s: None)
    msg = str(e.value)
    assert "\n" not in msg and "llmjax_test_latin1 train[1] feature 'text'" in msg
    assert "byte 9 (0xe9)" in msg and "--config.data.decode_errors=replace" in msg
    docs, lines = _quiet(DataConfig(**{**cfg.__dict__, "decode_errors": "replace"}))
    assert docs.train == ["train caf\u00e9 one", "train caf\ufffd two"]
    assert any("1 undecodable byte sequences read as U+FFFD in 1 of 4 records" in l
               for l in lines)


def test_tfrecord_without_tensorflow_says_what_to_do(monkeypatch):
    from tensorflow_datasets.core import file_adapters
    info = types.SimpleNamespace(file_format=file_adapters.FileFormat.TFRECORD,
                                 alternative_file_formats=[], full_name="lm1b/1.1.0")
    builder = types.SimpleNamespace(info=info, name="lm1b")
    monkeypatch.setitem(sys.modules, "tensorflow", None)  # import fails like it would here
    with pytest.raises(ValueError, match="pip install tensorflow.*--file_format=array_record"):
        next(sources._read_split(builder, "train", "text", "strict", {}))


# ---------------------------------------------------------------- stdlib


def test_stdlib_documents(tmp_path):
    docs, lines = _quiet(DataConfig(dataset="stdlib", tfds_data_dir=str(tmp_path)))
    s = docs.stats
    assert s["train_documents"] > 1000 and s["val_documents"] > 20
    assert s["documents_read"] == (s["train_documents"] + s["val_documents"]
                                   + s["empty_dropped"] + s["duplicates_dropped"])
    assert not set(docs.train) & set(docs.val)
    assert all("\r" not in t for t in docs.train[:200])
    assert os.path.isdir(tmp_path / "llmjax_stdlib")
    capped, _ = _quiet(DataConfig(dataset="stdlib", tfds_data_dir=str(tmp_path),
                                  max_train_chars=10_000))
    assert capped.stats["train_chars"] == 10_000
    assert set(docs.val) <= set(capped.val)  # repeats of unread train docs may stay in val
