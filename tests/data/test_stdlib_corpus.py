"""The stdlib tfds builder: real preparation into tmp dirs, split rules, reuse, no TensorFlow."""
import errno
import json
import os
import sys

import pytest

from llmjax.config import UserError
from llmjax.data import stdlib_corpus
from llmjax.data.sources import is_validation


def _read(builder, split):
    source = builder.as_data_source(split=split)
    return [(r["path"].decode(), r["text"].decode()) for r in (source[i] for i in range(len(source)))]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds"))


@pytest.fixture(scope="module")
def prepared(data_dir):
    return stdlib_corpus.prepare_builder(data_dir)


def test_real_stdlib_prepares_and_splits_by_file(prepared):
    assert prepared.is_prepared()
    assert prepared.builder_config.name == f"py{sys.version_info.major}_{sys.version_info.minor}"
    train, val = _read(prepared, "train"), _read(prepared, "validation")
    assert len(train) + len(val) > 1000
    train_paths, val_paths = {p for p, _ in train}, {p for p, _ in val}
    assert not train_paths & val_paths
    assert all(is_validation(p, 0.05) for p in val_paths)
    assert not any(is_validation(p, 0.05) for p in train_paths)
    assert 0.02 < len(val) / (len(train) + len(val)) < 0.09
    assert not any(p.startswith(("site-packages/", "dist-packages/")) for p in train_paths | val_paths)
    docs = dict(train + val)
    import json.decoder
    with open(json.decoder.__file__, encoding="utf-8") as f:
        assert docs["json/decoder.py"] == f.read()
    from pydoc_data.topics import topics
    assert docs[stdlib_corpus._TOPIC_PREFIX + "assert"] == topics["assert"]
    assert "tensorflow" not in sys.modules  # array_record all the way


def test_second_prepare_reuses(prepared, data_dir, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("prepared again")
    monkeypatch.setattr(stdlib_corpus.StdlibCorpus, "download_and_prepare", boom)
    again = stdlib_corpus.prepare_builder(data_dir)
    assert again.is_prepared() and again.info.splits["train"].num_examples == \
        prepared.info.splits["train"].num_examples


def test_builds_are_deterministic(prepared, tmp_path):
    other = stdlib_corpus.prepare_builder(str(tmp_path))
    for split in ("train", "validation"):
        assert _read(other, split) == _read(prepared, split)


def _fake_stdlib(root):
    files = {"a.py": "print('a')\n", "pkg/b.py": "x = 1\n", "pkg/c.py": "y = 'é'\n",
             "site-packages/skip.py": "no\n", "dist-packages/skip.py": "no\n",
             "__pycache__/skip.py": "no\n", "notes.txt": "not python\n"}
    for rel, text in files.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(os.path.join(root, "latin1.py"), "wb") as f:
        f.write(b"# -*- coding: latin-1 -*-\nname = '\xe9'\n")  # not UTF-8: skipped
    return {k: v for k, v in files.items() if k in ("a.py", "pkg/b.py", "pkg/c.py")}


def test_fake_stdlib_skips_and_splits_exactly(tmp_path):
    expected = _fake_stdlib(tmp_path / "lib")
    assert dict(stdlib_corpus.iter_documents(str(tmp_path / "lib"))) == expected
    builder = stdlib_corpus.StdlibCorpus(data_dir=str(tmp_path / "tfds"), val_fraction=0.5,
                                         stdlib_dir=str(tmp_path / "lib"))
    assert builder.builder_config.name.endswith("_val500")
    builder.download_and_prepare(file_format="array_record")
    val = dict(_read(builder, "validation"))
    train = dict(_read(builder, "train"))
    assert {**train, **val} == expected
    assert set(val) == {p for p in expected if is_validation(p, 0.5)}


def test_holdout_leaves_the_named_tasks_eval_files_out_of_train_only(tmp_path, monkeypatch):
    from llmjax.data import holdout

    expected = _fake_stdlib(tmp_path / "lib")
    monkeypatch.setitem(holdout.HOLDOUTS, "fake", lambda stdlib_dir: ["pkg/b.py:1", "pkg/c.py:1"])
    builder = stdlib_corpus.StdlibCorpus(data_dir=str(tmp_path / "tfds"), val_fraction=0.5,
                                         holdout=("fake",), stdlib_dir=str(tmp_path / "lib"))
    assert builder.builder_config.name.endswith("_val500_holdout_fake")
    builder.download_and_prepare(file_format="array_record")
    val = {p for p in expected if is_validation(p, 0.5)}
    assert {p for p, _ in _read(builder, "validation")} == val  # eval losses stay comparable
    assert {p for p, _ in _read(builder, "train")} == set(expected) - val - {"pkg/b.py", "pkg/c.py"}


def test_config_names_and_bad_fraction():
    tag = f"py{sys.version_info.major}_{sys.version_info.minor}"
    assert stdlib_corpus.config_for(0.05).name == tag
    assert stdlib_corpus.config_for(0.1).name == f"{tag}_val100"
    assert stdlib_corpus.config_for(0.0125).name == f"{tag}_val013"  # h < 12.5 <=> h < 13
    assert stdlib_corpus.config_for(0.05, ("stdlib_roles", "stdlib_packages")).name == (
        f"{tag}_holdout_stdlib_packages_stdlib_roles")
    with pytest.raises(ValueError, match="must be in"):
        stdlib_corpus.config_for(1.5)


def test_dataset_info_written(prepared):
    with open(os.path.join(prepared.data_dir, "dataset_info.json")) as f:
        info = json.load(f)
    assert info["name"] == "llmjax_stdlib"
    assert {s["name"] for s in info["splits"]} == {"train", "validation"}


@pytest.mark.parametrize("home", [False, True])
def test_a_data_dir_that_cannot_be_created_is_one_line(tmp_path, monkeypatch, home):
    """A data dir under a file fails as an unwritable HOME or tfds_data_dir does (even as root)."""
    (tmp_path / "file").write_text("x")
    if home:
        monkeypatch.setenv("HOME", str(tmp_path / "file"))
    where = str(tmp_path / "file" / ("" if home else "tfds"))
    with pytest.raises(UserError, match=f"cannot prepare the stdlib corpus in {where}.*set "
                                        "config.data.tfds_data_dir to a writable directory") as e:
        stdlib_corpus.prepare_builder(None if home else where)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("error, fix", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full: free space"),
    (PermissionError(errno.EACCES, "Permission denied"), "set config.data.tfds_data_dir to a writable"),
])
def test_a_failed_preparation_is_one_line(tmp_path, monkeypatch, error, fix):
    def fail(self, **kwargs):
        raise error
    monkeypatch.setattr(stdlib_corpus.StdlibCorpus, "download_and_prepare", fail)
    with pytest.raises(UserError, match=f"cannot prepare the stdlib corpus in {tmp_path}.*{fix}"):
        stdlib_corpus.prepare_builder(str(tmp_path))
