"""The decode benchmark in CI-sized form: it runs on a tiny model and its table is consistent."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_bench_decode_prints_a_consistent_table(tmp_path):
    args = [sys.executable, "experiments/bench_decode.py", "--config=configs/gpt_small.py", "--batch_sizes=2",
            "--new_tokens=12", "--uncached_new_tokens=6", "--repeats=2", "--config.model.num_layers=1",
            "--config.model.d_model=32", "--config.model.num_heads=2", "--config.model.mlp_dim=64",
            "--config.data.tokenizer=byte"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": "", "TMPDIR": str(tmp_path)}
    p = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = re.findall(r"^\s+(\d+)\s+(yes|no)\s+(\d+)\s+([\d.]+)\s+([\d,]+)\s+(\S+)$", p.stdout, re.M)
    assert [(int(b), c, int(n)) for b, c, n, *_ in rows] == [(2, "yes", 12), (2, "no", 6)], p.stdout
    for batch, _, new, ms, tok_s, ref in rows:
        expected = int(batch) * int(new) / (float(ms) / 1e3)  # tokens/s is batch * new tokens / time
        assert abs(float(tok_s.replace(",", "")) - expected) / expected < 0.05
        assert ref == "-"
    assert "machine: " in p.stdout and "vocab 320" in p.stdout  # byte: 262 padded to 64s
