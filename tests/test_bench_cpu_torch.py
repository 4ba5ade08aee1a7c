"""experiments/bench_cpu_torch.py in CI-sized form: llmjax and its PyTorch twin are the same model
(equal parameter counts, equal loss and gradient from equal weights) and the table has a ratio.
Skipped where PyTorch is not installed (it is not an llmjax dependency)."""
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("torch")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# Slow (about 30 s of CPU: torch and jax each import and compile): run `pytest -m slow` before the
# benchmark's figures are reported; tests/test_experiments.py keeps bench_step's table in the default run.
@pytest.mark.slow
def test_bench_cpu_torch_runs_the_same_model_on_both_sides():
    args = [sys.executable, "experiments/bench_cpu_torch.py",
            "--config.model.num_layers=1", "--config.model.d_model=64", "--config.model.num_heads=2",
            "--config.model.mlp_dim=256", "--config.data.seq_len=32", "--batch_sizes=4",
            "--steps=2", "--warmup=1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    counts = re.search(r"^parameters: llmjax ([\d,]+), PyTorch ([\d,]+)$", p.stdout, re.M)
    assert counts, p.stdout
    assert counts.group(1) == counts.group(2), p.stdout
    assert "MISMATCH" not in p.stdout
    side = r"\s+([\d.]+)\s+\S+\s+([\d,]+)\s+[\d.]+ \|"  # ms/step (min-max) tokens/s cores
    rows = re.findall(r"^\s+4 \|" + side + side + r"\s+([\d.]+)x", p.stdout, re.M)
    assert len(rows) == 1, p.stdout
    t_ms, t_tok, j_ms, j_tok, ratio = (float(x.replace(",", "")) for x in rows[0])
    assert ratio > 0 and t_ms > 0 and j_ms > 0
    # tokens/s is batch * seq_len / step time, and the ratio is llmjax over PyTorch
    assert abs(t_tok - 4 * 32 / (t_ms / 1e3)) / t_tok < 0.05
    assert abs(ratio - j_tok / t_tok) / ratio < 0.05
