"""BERT pretraining through the one loop: metrics rows, baselines, exact resume, and sharded
training equal to one device."""
import json
import shutil
from unittest import mock

import numpy as np
import pytest

from llmjax.experiment import resolve, train_and_evaluate
from tests.helpers import tiny_config, write_corpus

MLM_KEYS = ("loss", "mlm_loss", "nsp_loss", "mlm_accuracy", "nsp_accuracy")


def _rows(workdir):
    return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _tiny_bert(spec, **overrides):
    return tiny_config(spec, model="bert", task="mlm", data__seq_len=64, task__passes=2,
                       model__dropout=0.1, model__attention_dropout=0.1, **overrides)


def test_mlm_run_logs_its_metrics_and_resumes_exactly(tmp_path):
    spec = write_corpus(tmp_path / "corpus", num_files=30, max_chars=8000)
    cfg = resolve(_tiny_bert(spec), num_devices=8)
    a, b = tmp_path / "a", tmp_path / "b"
    out_a = train_and_evaluate(cfg, str(a), log=lambda _: None)
    rows = _rows(a)
    for split in ("train", "eval"):
        row = [r for r in rows if r["split"] == split][-1]
        assert all(k in row and np.isfinite(row[k]) for k in MLM_KEYS), (split, row)
        assert 0.0 <= row["mlm_accuracy"] <= 1.0 and 0.0 <= row["nsp_accuracy"] <= 1.0
        assert row["loss"] == pytest.approx(row["mlm_loss"] + row["nsp_loss"], rel=1e-5)
    for k in ("mlm_unigram_loss", "mlm_majority_accuracy", "nsp_majority_accuracy"):
        assert np.isfinite(out_a[k])
    assert 0.45 < out_a["nsp_majority_accuracy"] < 0.8  # pairs are balanced (random B half the time)
    assert json.loads((a / "results.json").read_text())["step"] == 12

    # b: the state of a when step 6 was saved; it must continue exactly as a did (masks and
    # pairs are functions of (seed, step), dropout of (seed, step)).
    b.mkdir()
    for name in ("tokenizer", "data"):
        shutil.copytree(a / name, b / name)
    shutil.rmtree(b / "data" / "sentence_pairs")  # built again below, the same
    shutil.copytree(a / "checkpoints" / "6", b / "checkpoints" / "6")
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 6))
    out_b = train_and_evaluate(cfg, str(b), log=lambda _: None)
    la = {(r["step"], r["split"]): r["loss"] for r in rows}
    lb = {(r["step"], r["split"]): r["loss"] for r in _rows(b)}
    assert la == lb
    assert out_a["mlm_loss"] == out_b["mlm_loss"] and out_a["nsp_accuracy"] == out_b["nsp_accuracy"]
    # the train and eval instances are files beside the corpus (b, without a's, built the same)
    pairs = {p.name: p.read_bytes() for p in (a / "data" / "sentence_pairs").glob("*.npy")}
    assert len(pairs) == 2 and pairs == {p.name: p.read_bytes()
                                         for p in (b / "data" / "sentence_pairs").glob("*.npy")}


def test_runs_sharing_a_prepared_dir_build_the_sentence_pairs_once(tmp_path):
    from llmjax.tasks import registry

    spec = write_corpus(tmp_path / "corpus", num_files=30, max_chars=4000)
    shared = tmp_path / "prepared"
    run = resolve(_tiny_bert(spec, data__prepared_dir=str(shared)))
    logs = {}
    for name in ("first", "second"):
        logs[name] = []
        task = registry.build(run)
        task.prepare(str(tmp_path / name), logs[name].append, resuming=False)
    built = [l for l in logs["first"] if "building BERT sentence pairs" in l]
    assert len(built) == 2 and not any("building" in l for l in logs["second"])
    assert len(list((shared / "sentence_pairs").glob("pairs-*.npy"))) == 2
    assert not (tmp_path / "second" / "sentence_pairs").exists()
    with mock.patch("os.access", lambda path, mode: path != str(shared)):  # read-only (for root too)
        third = registry.build(run)
        third.prepare(str(tmp_path / "third"), lambda _: None, resuming=False)
    assert len(list((tmp_path / "third" / "sentence_pairs").glob("pairs-*.npy"))) == 2
    np.testing.assert_array_equal(third.train_batch(3)["inputs"], task.train_batch(3)["inputs"])
