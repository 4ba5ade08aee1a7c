"""kill -9 a real `python -m llmjax.main` run, run the same command again: same final eval loss.

Two kill points, each against one uninterrupted run of the same command:

- during training, right after a checkpoint step directory appears (Orbax renames a complete
  checkpoint into place, so the kill lands between saves);
- during an async save: the kill is sent as soon as a `*.orbax-checkpoint-tmp*` directory is
  seen in checkpoints/. Guaranteed: the kill is sent while that temporary directory existed
  when polled. Not guaranteed: that the background write was still in progress when the signal
  arrived (a tiny state can finish in the microseconds between poll and kill). Either way the
  resumed run must restore the last complete checkpoint, ignore the partial one, and end with
  the uninterrupted run's eval loss, bit for bit (CPU, same command).

Five short runs of a 2-layer d_model=64 model on a small stdlib text corpus: about 60 s here.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.helpers import one_device_xla_flags, write_corpus

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = ["--config=configs/gpt_small.py", "--config.data.tokenizer=byte",
         "--config.model.num_layers=2", "--config.model.d_model=64", "--config.model.num_heads=4",
         "--config.model.mlp_dim=256", "--config.data.seq_len=64", "--config.train.batch_size=8",
         "--config.train.num_steps=20", "--config.train.eval_every=10",
         "--config.train.eval_steps=2", "--config.checkpoint.every_steps=5",
         "--config.train.num_samples=0", "--config.train.progress=False"]


def _command(spec, workdir, async_save):
    return [sys.executable, "-m", "llmjax.main", *SMALL, f"--config.data.dataset={spec}",
            f"--config.checkpoint.async_save={async_save}", f"--workdir={workdir}"]


def _env():
    return dict(os.environ, XLA_FLAGS=one_device_xla_flags(), JAX_PLATFORMS="cpu", PYTHONPATH=REPO)


def _run(cmd):
    out = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def _kill_when(cmd, ready):
    """Start cmd, SIGKILL it as soon as ready() is true; True if it was killed that way."""
    p = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while p.poll() is None and time.time() < deadline:
        if ready():
            p.send_signal(signal.SIGKILL)
            p.wait()
            return True
        time.sleep(0.0005)
    p.wait()
    return False


def _final_eval_loss(workdir):
    rows = [json.loads(l) for l in open(os.path.join(workdir, "metrics.jsonl"))]
    return [r["loss"] for r in rows if r["split"] == "eval" and r["step"] == 20][-1]


def _entries(workdir):
    try:
        return os.listdir(os.path.join(workdir, "checkpoints"))
    except FileNotFoundError:
        return []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return write_corpus(tmp_path_factory.mktemp("corpus"), num_files=12, max_chars=20_000)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("reference"))
    _run(_command(corpus, workdir, async_save=False))
    return _final_eval_loss(workdir)


def test_kill_during_training_then_resume(corpus, reference, tmp_path):
    workdir = str(tmp_path / "run")
    cmd = _command(corpus, workdir, async_save=False)
    assert _kill_when(cmd, lambda: "5" in _entries(workdir)), "the run ended before step 5 was saved"
    assert not os.path.exists(os.path.join(workdir, "checkpoints", "20"))  # killed mid-run
    out = _run(cmd)
    assert "resumed from step" in out, out
    assert _final_eval_loss(workdir) == reference


def test_kill_during_an_async_save_then_resume(corpus, reference, tmp_path):
    workdir = str(tmp_path / "run")
    cmd = _command(corpus, workdir, async_save=True)
    saving = lambda: any("orbax-checkpoint-tmp" in e for e in _entries(workdir))  # noqa: E731
    assert _kill_when(cmd, saving), "no save was seen in progress"
    _run(cmd)
    assert _final_eval_loss(workdir) == reference
    assert not any("tmp" in e for e in _entries(workdir))  # the partial save was cleaned up
