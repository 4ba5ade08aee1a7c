"""The gensim benchmark in CI-sized form: both trainers on a few stdlib files, a consistent table;
and the neighbour overlap it reports, on hand-made vectors."""
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))


def test_neighbour_overlap_counts_shared_top_k():
    from bench_word2vec import neighbour_overlap
    a = {"x": np.array([1.0, 0.0]), "y": np.array([0.9, 0.1]), "z": np.array([0.0, 1.0]), "w": np.array([-1.0, 0.1])}
    assert neighbour_overlap(a, dict(a), ["x", "z"], 1) == 1.0
    b = {**a, "z": np.array([1.0, 0.05])}  # z is now x's nearest, and x is z's
    assert neighbour_overlap(a, b, ["x", "z"], 1) == 0.0  # x: y vs z; z: y vs x
    assert neighbour_overlap(a, b, ["x"], 2) == 1.0  # x's two nearest are {y, z} in both, in another order


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
