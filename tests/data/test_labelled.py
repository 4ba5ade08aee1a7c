"""load_labelled: the embedded stdlib_packages task, and tfds: through a tiny real builder and
tfds.testing.mock_data for glue/sst2, glue/mrpc and imdb_reviews (no TensorFlow, no download)."""
import collections
import os
import re
import sys
import sysconfig

import numpy as np
import pytest
import tensorflow_datasets as tfds

from llmjax.data import labelled
from llmjax.data.labelled import PACKAGES, load_labelled


def _quiet(spec, **kw):
    return load_labelled(spec, log=lambda s: None, **kw)


def _err(spec, **kw) -> str:
    with pytest.raises(ValueError) as e:
        _quiet(spec, **kw)
    assert "\n" not in str(e.value)
    return str(e.value)


# ---------------------------------------------------------------- stdlib_packages


@pytest.fixture(scope="module")
def stdlib():
    return _quiet("stdlib_packages")


def _path(example_id: str) -> str:
    return example_id.rsplit(":", 1)[0]


def test_stdlib_classes_and_split_by_file(stdlib):
    d = stdlib
    assert d.label_names == PACKAGES and d.num_classes == len(set(PACKAGES)) == 10
    assert d.train_labels.dtype == np.int32 and d.eval_labels.dtype == np.int32
    assert len(d.train_texts) == len(d.train_labels) == len(d.train_ids)
    assert len(d.eval_texts) == len(d.eval_labels) == len(d.eval_ids)
    assert d.train_pairs is None and d.eval_pairs is None
    train_files = {_path(i) for i in d.train_ids}
    eval_files = {_path(i) for i in d.eval_ids}
    assert not train_files & eval_files
    for ids, labels in ((d.train_ids, d.train_labels), (d.eval_ids, d.eval_labels)):
        assert all(i.split("/")[0] == PACKAGES[y] for i, y in zip(ids, labels))
    for k, name in enumerate(PACKAGES):  # every class, real amounts, files on both sides
        assert (d.train_labels == k).sum() >= 50 and (d.eval_labels == k).sum() >= 30, name
        assert {f for f in train_files if f.startswith(name + "/")}
        assert {f for f in eval_files if f.startswith(name + "/")}
    assert len(d.train_ids) == len(set(d.train_ids)) and len(d.eval_ids) == len(set(d.eval_ids))
    assert not any("/test/" in f or "/tests/" in f for f in train_files | eval_files)


def test_stdlib_balance_and_stats(stdlib):
    d = stdlib
    counts = collections.Counter(d.train_labels.tolist())
    assert max(counts.values()) == labelled.MAX_TRAIN_IMBALANCE * min(counts.values())  # cap binds
    for split, labels in (("train", d.train_labels), ("eval", d.eval_labels)):
        c = collections.Counter(PACKAGES[y] for y in labels.tolist())
        assert d.stats[f"{split}_per_class"] == {n: c[n] for n in PACKAGES}
        assert d.stats[f"{split}_examples"] == len(labels)
        assert d.stats[f"{split}_imbalance"] == pytest.approx(max(c.values()) / min(c.values()),
                                                              abs=1e-3)
    # interleaved, so a prefix (max_examples, eval_steps) is a fair sample of every class
    assert len(set(d.train_labels[:100].tolist())) == 10
    assert len(set(d.eval_labels[:100].tolist())) == 10


_WORD = re.compile(r"\b(?:" + "|".join(PACKAGES) + r")\b")
_IMPORT_LINE = re.compile(r"^\s*(import |from \S+ import)")


def test_stdlib_chunks_are_masked_code_from_the_named_file(stdlib):
    root = sysconfig.get_paths()["stdlib"]
    d = stdlib
    rng = np.random.default_rng(0)
    ids, texts = d.train_ids + d.eval_ids, d.train_texts + d.eval_texts
    for j in rng.choice(len(ids), 300, replace=False):
        path, line = ids[j].rsplit(":", 1)
        chunk = texts[j].split("\n")
        assert 1 <= len(chunk) <= labelled.CHUNK_LINES and len(texts[j]) <= labelled.CHUNK_CHARS
        with open(os.path.join(root, path), encoding="utf-8") as f:
            source = [_WORD.sub("pkg", s.rstrip()) for s in f.read().splitlines()]
        start = int(line) - 1
        assert chunk[0] == source[start]
        pos = start  # the chunk's lines appear in the file in order from there
        for s in chunk:
            assert s.strip() and not _IMPORT_LINE.match(s) and not _WORD.search(s)
            pos = source.index(s, pos) + 1


def test_stdlib_deterministic_and_capped(stdlib):
    again = _quiet("stdlib_packages", eval_split="validation")
    assert again.train_ids == stdlib.train_ids and again.train_texts == stdlib.train_texts
    assert again.eval_ids == stdlib.eval_ids
    np.testing.assert_array_equal(again.eval_labels, stdlib.eval_labels)
    small = _quiet("stdlib_packages", max_examples=50)
    assert small.train_ids == stdlib.train_ids[:50] and small.eval_ids == stdlib.eval_ids


def test_chunking_drops_imports_masks_names_and_caps_size():
    text = ("from asyncio import (\n    run,\n    sleep)\nimport os, \\\n    sys\n\n"
            "def f():\n    import json\n    return asyncio.run(email_x)  # http://x\n"
            + "".join(f"x{i} = 1\n" for i in range(14)) + "tail1\ntail2\n")
    chunks = labelled._chunks(text)
    assert chunks == [
        (7, "def f():\n    return pkg.run(email_x)  # pkg://x\n"
            + "\n".join(f"x{i} = 1" for i in range(10))),
        (20, "\n".join(f"x{i} = 1" for i in range(10, 14)) + "\ntail1\ntail2")]
    assert labelled._chunks("a\nb\nc\n") == []  # a tail under MIN_CHUNK_LINES is dropped
    long = ["y" * 300] * 7
    assert [c.count("\n") + 1 for _, c in labelled._chunks("\n".join(long))] == [3, 3]


def _fake_stdlib(root, sizes):
    """Each package gets files a.py, b.py, ... of the given sizes in chunks (12 lines each)."""
    for package in PACKAGES:
        os.makedirs(os.path.join(root, package, "tests"))
        with open(os.path.join(root, package, "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(root, package, "tests", "t.py"), "w") as f:
            f.write("\n".join(f"t{i} = 0" for i in range(100)))
        for name, n in zip("abcdefg", sizes):
            with open(os.path.join(root, package, f"{name}.py"), "w") as f:
                f.write("\n".join(f"{package}_{name}{i} = {i}" for i in range(12 * n)))


@pytest.mark.parametrize("sizes", [(50, 50), (1, 100), (100, 1, 1, 1), (3, 3, 3, 3, 3, 3, 3)])
def test_stdlib_split_rule_puts_every_class_in_both_splits(tmp_path, sizes):
    _fake_stdlib(str(tmp_path), sizes)
    d = labelled.stdlib_packages(str(tmp_path))
    train_files = {_path(i) for i in d.train_ids}
    eval_files = {_path(i) for i in d.eval_ids}
    assert not train_files & eval_files and not any("tests" in f for f in train_files | eval_files)
    for package in PACKAGES:
        held = sum(i.startswith(package + "/") for i in d.eval_ids)
        assert held >= 1 and any(f.startswith(package + "/") for f in train_files)
        assert held <= max(min(sizes), 2 * labelled.EVAL_FRACTION * sum(sizes))


def test_stdlib_errors(tmp_path):
    _fake_stdlib(str(tmp_path), (5, 5))
    os.remove(tmp_path / "email" / "__init__.py")
    with pytest.raises(ValueError, match="'email' is missing") as e:
        labelled.stdlib_packages(str(tmp_path))
    assert "\n" not in str(e.value)
    _fake_stdlib(str(tmp_path / "one"), (5,))
    with pytest.raises(ValueError, match="2 are needed"):
        labelled.stdlib_packages(str(tmp_path / "one"))
    assert "must be stdlib_packages or tfds:" in _err("stdlib_package")
    assert "must be stdlib_packages or tfds:" in _err("tfds:")
    assert "leave text_keys empty" in _err("stdlib_packages", text_keys=("text",))
    assert "splits 'train' and 'validation'" in _err("stdlib_packages", eval_split="test")
    assert "max_examples=-1" in _err("stdlib_packages", max_examples=-1)


# ---------------------------------------------------------------- tfds: a tiny real builder


def _code_path(cls):
    """tfds's default lookup imports `importlib_resources`, absent on Python 3.9+."""
    from etils import epath
    return epath.Path(__file__)


class LlmjaxTestLabelled(tfds.core.GeneratorBasedBuilder):
    """A pair task with 3 classes; test is unlabelled (-1) like GLUE's."""
    VERSION = tfds.core.Version("1.0.0")
    code_path = tfds.core.utils.classproperty(classmethod(_code_path))

    def _info(self):
        return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
            "premise": tfds.features.Text(), "hypothesis": tfds.features.Text(),
            "label": tfds.features.ClassLabel(names=["no", "yes", "maybe"]),
            "score": tfds.features.Scalar(dtype=np.int64)}))

    def _split_generators(self, dl_manager):
        return {"train": self._generate_examples("train", 20),
                "validation": self._generate_examples("validation", 6),
                "test": self._generate_examples("test", 4)}

    def _generate_examples(self, split, n):
        for i in range(n):
            yield i, {"premise": f"{split} premise {i} é", "hypothesis": f"{split} hyp {i}",
                      "label": -1 if split == "test" else i % 3, "score": i}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("tfds"))
    LlmjaxTestLabelled(data_dir=root).download_and_prepare(file_format="array_record")
    return root


def test_tfds_single_text_and_pairs(tiny_dir):
    d = _quiet("tfds:llmjax_test_labelled", tfds_data_dir=tiny_dir, text_keys=("premise",))
    assert d.label_names == ("no", "yes", "maybe") and d.train_pairs is None
    # tfds stores examples shuffled by key: compare (text, label) as sets, order by stored index
    assert sorted(zip(d.train_texts, d.train_labels.tolist())) == sorted(
        (f"train premise {i} é", i % 3) for i in range(20))
    assert sorted(zip(d.eval_texts, d.eval_labels.tolist())) == sorted(  # default: validation
        (f"validation premise {i} é", i % 3) for i in range(6))
    assert d.eval_ids == [f"validation[{i}]" for i in range(6)] and d.eval_labels.dtype == np.int32
    assert d.stats["train_per_class"] == {"no": 7, "yes": 7, "maybe": 6}
    p = _quiet("tfds:llmjax_test_labelled", tfds_data_dir=tiny_dir,
               text_keys=("premise", "hypothesis"), max_examples=5)
    assert p.train_texts == d.train_texts[:5] and p.eval_texts == d.eval_texts
    assert p.train_pairs == [t.replace("premise", "hyp")[:-2] for t in p.train_texts]
    assert p.eval_pairs == [t.replace("premise", "hyp")[:-2] for t in p.eval_texts]
    assert "tensorflow" not in sys.modules


def test_tfds_errors(tiny_dir, tmp_path):
    spec, ok = "tfds:llmjax_test_labelled", {"tfds_data_dir": tiny_dir, "text_keys": ("premise",)}
    msg = _err(spec, **{**ok, "eval_split": "test"})
    assert "label -1" in msg and "eval_split='validation'" in msg
    assert "available: train, validation, test" in _err(spec, **{**ok, "train_split": "dev"})
    assert "ClassLabel features: label" in _err(spec, **{**ok, "label_key": "score"})
    assert "Text features: premise, hypothesis" in _err(spec, **{**ok, "text_keys": ("nope",)})
    assert "has 2 Text features" in _err(spec, tfds_data_dir=tiny_dir)
    assert "one or two" in _err(spec, **{**ok, "text_keys": ("premise",) * 3})
    msg = _err(spec, tfds_data_dir=str(tmp_path))
    assert "not prepared" in msg and f"--data_dir {tmp_path}" in msg
    assert "tfds build no_such_dataset_xyz" in _err("tfds:no_such_dataset_xyz",
                                                     tfds_data_dir=str(tmp_path))


# ---------------------------------------------------------------- tfds: real builders, mocked


@pytest.mark.parametrize("name, keys, names, eval_split", [
    ("glue/sst2", ("sentence",), ("negative", "positive"), "validation"),
    ("imdb_reviews", ("text",), ("neg", "pos"), "test"),
    ("glue/mrpc", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"), "validation"),
])
def test_tfds_real_builders(mocked_tfds, name, keys, names, eval_split):
    d = _quiet(f"tfds:{name}", tfds_data_dir=mocked_tfds, text_keys=keys)
    source = tfds.builder(name).as_data_source(split=eval_split)
    expect = [source[i] for i in range(len(source))]
    assert d.label_names == names and len(expect) == 9
    assert d.eval_ids == [f"{eval_split}[{i}]" for i in range(9)]
    assert d.eval_texts == [r[keys[0]] for r in expect] and all(d.eval_texts)
    np.testing.assert_array_equal(d.eval_labels, [int(r["label"]) for r in expect])
    if len(keys) == 2:
        assert d.eval_pairs == [r[keys[1]] for r in expect] and len(d.train_pairs) == 9
    assert len(d.train_texts) == 9 and set(d.train_labels.tolist()) <= {0, 1}
    single = _quiet(f"tfds:{name}", tfds_data_dir=mocked_tfds) if len(keys) == 1 else None
    assert single is None or single.train_texts == d.train_texts  # the only Text feature


def test_a_stream_gives_what_load_labelled_collects(tiny_dir):
    """open_labelled streams (split, id, texts, label) rows, train's first, with the stats of
    each pass; load_labelled's lists are those rows."""
    stream = labelled.open_labelled("tfds:llmjax_test_labelled", tfds_data_dir=tiny_dir,
                                    text_keys=("premise", "hypothesis"), max_examples=7)
    assert stream.paired and stream.label_names == ("no", "yes", "maybe") and stream.stats is None
    rows = list(stream)
    d = _quiet("tfds:llmjax_test_labelled", tfds_data_dir=tiny_dir,
               text_keys=("premise", "hypothesis"), max_examples=7)
    assert [r[0] for r in rows] == ["train"] * 7 + ["eval"] * 6
    assert [r[1] for r in rows] == d.train_ids + d.eval_ids
    assert [r[2] for r in rows] == list(zip(d.train_texts + d.eval_texts, d.train_pairs + d.eval_pairs))
    assert [r[3] for r in rows] == d.train_labels.tolist() + d.eval_labels.tolist()
    assert stream.stats == d.stats and stream.stats["train_examples"] == 7
    assert list(stream) == rows  # a second pass reads it again


def test_stdlib_stream_builds_nothing_until_read(monkeypatch):
    built = []
    monkeypatch.setattr(labelled, "_package_files", lambda *a: built.append(a) or [])
    stream = labelled.open_labelled("stdlib_packages")
    assert not built and stream.label_names == PACKAGES
    with pytest.raises(ValueError, match="2 are needed"):
        next(iter(stream))
