"""BERT pretraining through the one loop: metrics rows, baselines, exact resume, and sharded
training equal to one device."""
import functools
import json
import shutil
from types import SimpleNamespace

import flax.linen as nn
import jax
import numpy as np
import pytest

from llmjax import sharding
from llmjax.config import DataConfig, OptimConfig, TrainConfig
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.models import registry
from llmjax.models.bert import BertConfig
from llmjax.tasks.mlm import MLMTask, MLMTaskConfig
from llmjax.training import optim
from llmjax.training.state import abstract_state, create, init_fn
from llmjax.training.step import jit_train_step, make_train_step
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
    shutil.copytree(a / "checkpoints" / "6", b / "checkpoints" / "6")
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= 6))
    out_b = train_and_evaluate(cfg, str(b), log=lambda _: None)
    la = {(r["step"], r["split"]): r["loss"] for r in rows}
    lb = {(r["step"], r["split"]): r["loss"] for r in _rows(b)}
    assert la == lb
    assert out_a["mlm_loss"] == out_b["mlm_loss"] and out_a["nsp_accuracy"] == out_b["nsp_accuracy"]


CFG = BertConfig(vocab_size=128, num_layers=2, d_model=32, num_heads=8, mlp_dim=64, max_len=16,
                 dropout=0.0, attention_dropout=0.0)
# BERT's Adam epsilon (1e-6): the key bias has a mathematically zero gradient (softmax ignores
# it) that comes out as ~1e-11 noise differing between meshes; with eps 1e-8 Adam would turn
# that noise into full-size updates and the comparison would measure nothing but the noise.
OPT = OptimConfig(lr=3e-3, warmup_steps=2, eps=1e-6)


def _batches(task, n, batch=16, length=16, seed=0):
    """MLM batches over structured token rows (learnable), with padding and both NSP labels."""
    rng = np.random.default_rng(seed)
    P = task.max_predictions
    out = []
    for _ in range(n):
        start = rng.integers(5, 60, size=(batch, 1))
        tokens = ((start + np.arange(length)[None]) % 120 + 5).astype(np.int32)
        real = np.arange(length)[None] < rng.integers(length // 2, length + 1, size=(batch, 1))
        pos = np.sort(np.stack([rng.choice(length // 2, P, replace=False) for _ in range(batch)]), -1)
        ids = np.take_along_axis(tokens, pos, 1)
        inputs = tokens.copy()
        np.put_along_axis(inputs, pos, 4, 1)  # "mask" id
        out.append({"inputs": np.where(real, inputs, 0).astype(np.int32),
                    "token_types": (np.arange(length)[None] >= length // 2).repeat(batch, 0).astype(np.int32),
                    "attention_mask": real.astype(np.int32), "mlm_positions": pos.astype(np.int32),
                    "mlm_ids": ids.astype(np.int32), "mlm_weights": np.ones((batch, P), np.float32),
                    "nsp_labels": rng.integers(0, 2, batch).astype(np.int32),
                    "weights": np.ones((batch,), np.float32)})
    return out


def _train(shape, devices=None, steps=6, accum=1):
    mesh = sharding.make_mesh(shape, devices)
    model = registry.build(CFG)
    task = MLMTask(SimpleNamespace(train=TrainConfig(), data=DataConfig(seq_len=16), task=MLMTaskConfig()))
    batches = _batches(task, steps)
    tx, lr = optim.optimizer(OPT, 100), optim.schedule(OPT, 100)
    bsh = sharding.batch_shardings(mesh, batches[0])
    with jax.set_mesh(mesh), nn.logical_axis_rules(sharding.RULES):
        init = init_fn(functools.partial(task.init_params, model), tx, seed=0)
        _, state_sh = abstract_state(init, mesh)
        state = create(init, state_sh)
        step = jit_train_step(make_train_step(task, model, tx, lr, seed=0, grad_accum_steps=accum),
                              state_sh, bsh)
        losses = []
        for b in batches:
            state, m = step(state, jax.device_put(b, bsh))
            losses.append([float(m[k]) for k in ("mlm_loss", "nsp_loss")])
    return np.array(losses)


@pytest.fixture(scope="module")
def reference():
    return _train((1, 1, 1), devices=jax.devices()[:1])


# (1, 8, 1) is slow: fsdp alone is also tests/test_sharding.py's, on GPT.
@pytest.mark.parametrize("shape, accum", [((2, 2, 2), 1), pytest.param((1, 8, 1), 1, marks=pytest.mark.slow),
                                          ((8, 1, 1), 2)])
def test_bert_sharded_matches_one_device(reference, shape, accum):
    losses = _train(shape, accum=accum)
    assert losses[-1, 0] < losses[0, 0]
    np.testing.assert_allclose(losses, reference, rtol=2e-5)
