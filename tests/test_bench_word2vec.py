"""The gensim benchmark in CI-sized form: both trainers on a few stdlib files, a consistent table
(slow: pytest -m slow)."""
import os
import re
import subprocess
import sys

import pytest

from tests.helpers import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))


@pytest.mark.slow  # a benchmark's own run: minutes of CPU on a busy machine
def test_bench_word2vec_prints_both_trainers(tmp_path):
    pytest.importorskip("gensim")
    dataset = write_corpus(str(tmp_path / "corpus"), num_files=6)
    args = [sys.executable, "experiments/bench_word2vec.py", f"--dataset={dataset}", "--epochs=1",
            "--batch_tokens=2048", "--min_count=2", "--dim=16", f"--workdir={tmp_path / 'bench'}", "--workers=1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TMPDIR": str(tmp_path)}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^(gensim|llmjax)\s+([\d,]+)\s", p.stdout, re.M)
    assert [name for name, _ in rows] == ["gensim", "llmjax"], p.stdout
    assert all(float(rate.replace(",", "")) > 0 for _, rate in rows)
    overlap = re.search(r"gensim vs llmjax ([\d.]+); gensim vs gensim \(another seed\) ([\d.]+)", p.stdout)
    assert overlap and all(0.0 <= float(x) <= 1.0 for x in overlap.groups()), p.stdout
