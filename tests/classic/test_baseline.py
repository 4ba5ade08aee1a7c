"""The classic baselines end to end: `python -m llmjax.baseline` on a tiny train split, its
results.json keyed exactly as the classify task's, text pairs, and bad input as one line
before any fitting."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from llmjax.classic.config import base_config, resolve
from llmjax.classic.run import run_baseline
from llmjax.config import ConfigError, UserError
from llmjax.experiment import resolve as resolve_experiment
from llmjax.tasks import registry
from tests.helpers import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "llmjax.baseline", *args], cwd=ROOT,
                          env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                          text=True, timeout=300)


def _one_line_error(p, needle):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("llmjax: error: "), p.stderr
    assert needle in lines[0], lines[0]


def _classify_task_keys(workdir):
    """The keys the classify task's run writes to results.json: its eval metrics, its
    baselines, the step and the parameter count (llmjax.training.loop; a network's run adds its
    tokens_seen), from a task prepared on the same data."""
    run = resolve_experiment(tiny_config("stdlib", task="classify", task__max_examples=40), num_devices=1)
    task = registry.build(run)
    task.prepare(str(workdir), lambda _: None, resuming=False)
    k = task.num_labels
    totals = {"confusion": np.eye(k), "nll_sum": 1.0, "examples": float(k)}
    return {*task.eval_metrics(totals), *task.baselines(), "step", "params"}


def test_the_entry_point_writes_what_the_classify_task_writes(tmp_path):
    work = tmp_path / "tfidf"
    p = _cli("--config=configs/tfidf_classify.py", f"--workdir={work}", "--config.task.max_examples=60")
    assert p.returncode == 0, p.stderr[-2000:]
    assert "tfidf+LR: eval loss" in p.stdout and "(majority class" in p.stdout
    results = json.loads((work / "results.json").read_text())
    assert set(results) == _classify_task_keys(tmp_path / "classify")
    assert 0.0 <= results["accuracy"] <= 1.0 and results["examples"] > 60
    assert len(results["confusion"]) == 10 and results["step"] >= 1
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert [r["split"] for r in rows] == ["train", "eval"]
    assert rows[1]["accuracy"] == results["accuracy"] and rows[0]["features"] > 0
    assert results["params"] == (rows[0]["features"] + 1) * 10  # a weight per feature and class, and biases
    assert json.loads((work / "config.json").read_text())["features"]["kind"] == "tfidf"


def test_bad_keys_are_one_line(tmp_path):
    _one_line_error(_cli("--config=configs/bow_classify.py", f"--workdir={tmp_path}",
                         "--config.features.kindd=bow"),
                    "unknown config key config.features.kindd: known keys here: affix, embeddings, kind")
    _one_line_error(_cli("--config=configs/bow_classify.py", f"--workdir={tmp_path}",
                         "--config.features.kind=word2vec"),
                    "config.features.kind='word2vec': must be one of bow, tfidf, embedding")
    assert not (tmp_path / "results.json").exists()


def _config(**overrides):
    c = base_config("classify", "bow")
    c.task.max_examples = 40
    for key, value in overrides.items():
        group, leaf = key.split("__")
        c[group][leaf] = value
    return c


@pytest.mark.parametrize("overrides, needle", [
    (dict(features__kind="embedding"), "config.features.embeddings='': kind 'embedding' reads Word2Vec"),
    (dict(features__token_pattern="(a)+"), "must have no capturing group"),
    (dict(features__token_pattern="a*"), "matches the empty string"),
    (dict(features__ngram_min=2), "config.features.ngram_max=1: must be at least config.features.ngram_min=2"),
    (dict(classifier__class_weight="equal"), "config.classifier.class_weight='equal': must be one of , balanced"),
    (dict(task__name="lm"), "config.task.name='lm': a baseline fits the tasks classify, tag"),
])
def test_bad_config_values_are_one_line_at_resolve(overrides, needle):
    with pytest.raises(ConfigError, match=None) as e:
        resolve(_config(**overrides))
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_text_pairs_are_joined_and_scored(tmp_path, mocked_tfds):
    c = _config(task__dataset="tfds:glue/mrpc", task__text_keys="sentence1,sentence2",
                data__tfds_data_dir=mocked_tfds, task__max_examples=0, features__kind="tfidf")
    msgs = []
    results = run_baseline(resolve(c), str(tmp_path), log=msgs.append)
    assert results["examples"] == 9 and sorted(results["recall"]) == ["equivalent", "not_equivalent"]
    assert any("(text pairs)" in m for m in msgs)


def test_a_dataset_the_task_cannot_read_is_one_line_before_fitting(tmp_path):
    with pytest.raises(UserError, match=r"^spec='nope': must be stdlib_packages or tfds:"):
        run_baseline(resolve(_config(task__dataset="nope")), str(tmp_path), log=lambda _: None)
    assert not os.listdir(tmp_path)
