"""experiments/attention_parity.py (the first thing gpu_bench.sh runs) on CPU: it says it has no
GPU and passes; against jax's XLA path it passes; against a kernel that drops the packed-document
mask it fails with a non-zero status."""
import importlib.util
import os
import subprocess
import sys

import jax
import pytest

from llmjax.blocks import attention

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def parity():
    spec = importlib.util.spec_from_file_location(
        "attention_parity", os.path.join(ROOT, "experiments", "attention_parity.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="on a GPU it compares cuDNN")
def test_without_a_gpu_it_says_so_in_one_line_and_passes(parity, capsys):
    assert parity.main([]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"attention_parity: no GPU (jax backend {jax.default_backend()!r}): cuDNN not compared"]


def test_a_matching_backend_passes_every_quantity(parity, capsys):
    assert parity.main(["--candidate=jax", "--seq_len=16", "--cases=layer"]) == 0
    out = capsys.readouterr().out
    for quantity in ("out", "d query/kernel", "d key/kernel", "d out/bias", "dx"):
        assert f" {quantity} " in out, out
    assert "jax matches xla" in out


def test_a_kernel_that_drops_the_mask_fails(parity, capsys, monkeypatch):
    real = attention._jax_attention
    monkeypatch.setattr(attention, "_jax_attention", lambda q, k, v, mask, *rest: real(q, k, v, None, *rest))
    assert parity.main(["--candidate=jax", "--seq_len=16", "--cases=causal,packed_alibi"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH in packed_alibi/out" in out and "causal/out" not in out.split("MISMATCH")[1], out


def test_gpu_bench_runs_the_parity_check_first_and_stops_when_it_fails(tmp_path):
    """python stubbed: it records each call and fails the parity check; nothing else may run."""
    calls = tmp_path / "calls"
    stub = tmp_path / "python"
    stub.write_text(f'#!/bin/sh\necho "$@" >> {calls}\ncase "$1" in *attention_parity.py) exit 1;; esac\n')
    stub.chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    p = subprocess.run(["bash", os.path.join(ROOT, "experiments", "gpu_bench.sh")], env=env,
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 1
    assert calls.read_text().splitlines() == ["experiments/attention_parity.py"]
