"""The benchmark script in CI-sized form: it runs, and its table is consistent with itself."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_step_prints_a_consistent_table(tmp_path):
    args = [sys.executable, "experiments/bench_step.py", "--config=configs/gpt_small.py",
            "--batch_sizes=4,8", "--steps=2", "--warmup=1", "--real_data",
            "--config.model.num_layers=1", "--config.model.d_model=32", "--config.model.num_heads=2",
            "--config.model.mlp_dim=64", "--config.data.tokenizer=byte", "--config.data.seq_len=32",
            "--config.data.max_train_chars=200000"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TMPDIR": str(tmp_path)}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+)\s+([\d.]+)\s+([\d,]+)\s+([\d.]+)\s+.*?([+-][\d.]+)%", p.stdout, re.M)
    assert [int(r[0]) for r in rows] == [4, 8], p.stdout
    for batch, ms, tok_s, _, _ in rows:
        # tokens/s is batch * seq_len / step time, to the printed precision
        expected = int(batch) * 32 / (float(ms) / 1e3)
        assert abs(float(tok_s.replace(",", "")) - expected) / expected < 0.05
    assert "FLOPs/token" in p.stdout and "reference" in p.stdout
