"""Faults the loop must handle: divergence stops the run and never saves or rotates out a
finite checkpoint; a raised train.num_steps keeps the schedule's horizon; evaluation covers the
whole validation split with the baseline over exactly the rows evaluated; a SIGTERM during that
eval saves and stops after the batch it arrived in; a warm-up longer than the run is a warning."""
import json
import os
import shutil
import signal

import numpy as np
import orbax.checkpoint as ocp
import pytest

from llmjax.data.pipeline import prepare
from llmjax.data.tokenizers import load_tokenizer
from llmjax.experiment import resolve, train_and_evaluate
from llmjax.training import loop
from llmjax.training.loop import DivergedError
from tests.helpers import tiny_config, write_corpus


def _rows(workdir):
    return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def _steps(workdir):
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def _all_finite(path):
    tree = ocp.StandardCheckpointer().restore(path / "state")
    return all(np.all(np.isfinite(np.asarray(x))) for x in
               __import__("jax").tree.leaves(tree) if np.asarray(x).dtype.kind == "f")


# The healthy run both continuations below start from: 12 steps, checkpoints 6 and 12 (keep=2).
HEALTHY = dict(checkpoint__keep=2, checkpoint__async_save=False, optim__schedule="cosine",
               optim__min_lr_ratio=0.1)


@pytest.fixture(scope="module")
def healthy(tmp_path_factory):
    """(corpus spec, workdir) of one healthy run, made once; each test continues a copy."""
    tmp = tmp_path_factory.mktemp("healthy")
    spec = write_corpus(tmp / "corpus")
    train_and_evaluate(resolve(tiny_config(spec, **HEALTHY), num_devices=8), str(tmp / "run"), log=lambda _: None)
    return spec, tmp / "run"


def _continue(healthy, tmp_path):
    spec, run = healthy
    shutil.copytree(run, tmp_path / "run")
    return spec, tmp_path / "run"


def test_divergence_stops_and_keeps_the_finite_checkpoints(tmp_path, healthy):
    spec, work = _continue(healthy, tmp_path)
    assert _steps(work) == [6, 12]
    # Resume with an absurd learning rate and a long horizon: before the fix this trained NaN to
    # the end, saved NaN checkpoints every 6 steps and rotated 6 and 12 out (keep=2).
    bad = tiny_config(spec, **HEALTHY, optim__lr=1e6, train__num_steps=60)
    with pytest.raises(DivergedError) as e:
        train_and_evaluate(resolve(bad, num_devices=8), str(work), log=lambda _: None)
    msg = str(e.value)
    assert "\n" not in msg and "training diverged" in msg and "config.optim.lr" in msg
    steps = _steps(work)
    assert 12 in steps or steps[-1] > 12
    for s in steps:
        assert _all_finite(work / "checkpoints" / str(s)), f"checkpoint {s} holds NaN/Inf"
    diverged_at = int(msg.split(":")[0].split()[1])
    assert all(s < diverged_at for s in steps)


def test_raising_num_steps_keeps_the_schedule_horizon(tmp_path, healthy):
    spec, work = _continue(healthy, tmp_path)
    msgs = []
    longer = tiny_config(spec, **HEALTHY, train__num_steps=18)
    train_and_evaluate(resolve(longer, num_devices=8), str(work), log=msgs.append)
    assert any("keeps that horizon" in m for m in msgs)
    lrs = {r["step"]: r["lr"] for r in _rows(work) if r["split"] == "train"}
    floor = 0.1 * longer.optim.lr
    # Before the fix the 18-step cosine jumped back up at step 13.
    assert all(lrs[s] == pytest.approx(floor, rel=1e-5) for s in range(13, 19)), lrs


def test_eval_covers_the_whole_split_and_the_baseline_the_same_rows(tmp_path):
    spec = write_corpus(tmp_path / "corpus")
    work = tmp_path / "run"
    cfg = tiny_config(spec, train__eval_steps=0, train__num_steps=6)
    run = resolve(cfg, num_devices=8)
    out = train_and_evaluate(run, str(work), log=lambda _: None)
    data = prepare(run.data, str(work), log=lambda _: None)  # the run's prepared corpus, reused
    val, train = np.asarray(data.val_tokens), np.asarray(data.train_tokens)
    rows = (len(val) - 1) // run.data.seq_len
    assert out["tokens"] == rows * run.data.seq_len  # every validation row, padding excluded
    # The baseline over exactly those targets.
    vocab = load_tokenizer(str(work / "tokenizer")).vocab_size  # smoothing covers the specials
    counts = np.bincount(train, minlength=vocab).astype(np.float64) + 1.0
    log_p = np.log(counts / counts.sum())
    targets = val[1:rows * run.data.seq_len + 1]
    assert out["unigram_loss"] == pytest.approx(-log_p[targets].mean(), rel=1e-9)


class _Started(Exception):
    pass


def test_a_warmup_longer_than_the_run_is_a_warning_in_the_log(tmp_path):
    """Logged with the run's start, before the first step (on_start stops it there)."""
    spec = write_corpus(tmp_path / "corpus", num_files=4)
    msgs = []

    def stop():
        raise _Started
    with pytest.raises(_Started):
        train_and_evaluate(resolve(tiny_config(spec, optim__warmup_steps=20), num_devices=8),
                           str(tmp_path / "run"), log=msgs.append, on_start=stop)
    warnings = [m for m in msgs if m.startswith("warning: config.optim.warmup_steps=20")]
    assert len(warnings) == 1 and "never reaches its peak" in warnings[0], msgs


def test_a_sigterm_during_a_whole_split_eval_saves_and_stops_after_the_batch(tmp_path, monkeypatch):
    """The signal arrives during eval batch 2 of step 3 (no checkpoint due there): the eval stops
    after that batch, step 3 is saved and the run stops, as for a SIGTERM during training,
    instead of finishing the whole split first (longer than a preemption's grace period)."""
    spec = write_corpus(tmp_path / "corpus")
    work = tmp_path / "run"
    batches = []
    real_put = loop._put

    def put(mesh, make_batch, index, rows):
        if make_batch.__name__ == "eval_batch":
            batches.append(index)
            if len(batches) == 3:
                os.kill(os.getpid(), signal.SIGTERM)
        return real_put(mesh, make_batch, index, rows)
    monkeypatch.setattr(loop, "_put", put)
    before = signal.getsignal(signal.SIGTERM)
    cfg = tiny_config(spec, train__eval_steps=0, train__eval_every=3, checkpoint__every_steps=12)
    run = resolve(cfg, num_devices=8)
    msgs = []
    out = train_and_evaluate(run, str(work), log=msgs.append)
    assert batches == [0, 1, 2]  # of many more: the split has over 100 batches of 8 rows
    assert out["step"] == 3 and _steps(work) == [3]
    assert any(m.startswith("stop requested: saved step 3") for m in msgs), msgs
    assert not [r for r in _rows(work) if r["split"] == "eval"]  # a partial eval is not recorded
    assert signal.getsignal(signal.SIGTERM) == before
