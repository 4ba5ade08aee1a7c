"""`python -m llmjax.prepare`: one corpus prepared for many runs, and its command-line faults."""
import json
import os
import subprocess
import sys

import pytest

from tests.data.test_preparation import _jsonl_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "llmjax.prepare", "--config=configs/gpt_small.py", *args],
                          cwd=ROOT, env={**os.environ, "JAX_PLATFORMS": "cpu"}, capture_output=True,
                          text=True, timeout=300)


def test_two_machines_prepare_what_one_does(tmp_path):
    """--shard=I/N on N machines sharing the directory (here two processes at once): each
    scans and encodes its units, machine 0 trains the tokenizer and writes the manifest."""
    spec = _jsonl_corpus(tmp_path / "corpus")
    common = [f"--config.data.dataset={spec}", "--config.data.vocab_size=320",
              "--config.data.spm_train_chars=20000", "--workers=1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    base = [sys.executable, "-m", "llmjax.prepare", "--config=configs/gpt_small.py"]
    procs = [subprocess.Popen([*base, f"--out={tmp_path / 'two'}", f"--shard={i}/2", *common], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in (1, 0)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert "machine 0 writes the manifest" in outs[0][0]
    one = _cli(f"--out={tmp_path / 'one'}", *common)
    assert one.returncode == 0, one.stderr
    a, b = (json.loads((tmp_path / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert a["fingerprint"] == b["fingerprint"] and a["shards"] == b["shards"]
    again = _cli(f"--out={tmp_path / 'one'}", *common)
    assert "is already prepared" in again.stdout


@pytest.mark.parametrize("text, needle", [
    ("2/2", "--shard='2/2': I must be in 0..N-1"),
    ("a", "--shard='a' must be I/N"),
])
def test_a_bad_shard_is_one_line(capsys, text, needle):
    from llmjax import prepare
    with pytest.raises(SystemExit) as e:
        prepare._shard(text)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_a_bad_command_line_is_one_line():
    p = _cli()
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "no directory given: pass --out=DIR" in lines[0]
    p = _cli("--out=x", "--config.data.dataset=jsonl:/nonexistent/*.jsonl")
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "matches no files" in lines[0], p.stderr
