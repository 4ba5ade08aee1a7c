"""metrics.jsonl rewinding on resume, bits per byte, and the device peak table."""
import json
import math
import os
import subprocess
import sys

import pytest

from llmjax.training import metrics


class _Device:
    def __init__(self, kind):
        self.device_kind = kind


def test_rewind_moves_rows_after_the_checkpoint_aside(tmp_path):
    rows = [{"step": s, "split": "train", "loss": 1.0 / s} for s in range(1, 6)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "spl'  # cut by a kill
    (tmp_path / "metrics.jsonl").write_text(text)
    w = metrics.MetricsWriter(str(tmp_path), resume_step=3, tensorboard=False)
    w.write({"step": 4, "split": "train", "loss": 0.5})
    kept = [json.loads(l) for l in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in kept] == [1, 2, 3, 4] and kept[-1]["loss"] == 0.5
    dropped = (tmp_path / "metrics.discarded.jsonl").read_text().splitlines()
    assert len(dropped) == 3 and dropped[-1] == '{"step": 6, "spl'


def test_bits_per_byte():
    assert math.isclose(metrics.bits_per_byte(math.log(2) * 10, 5), 2.0)


@pytest.mark.parametrize("kind, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12),
    ("NVIDIA H100 PCIe", 756e12),
    ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H800", 989e12),
    ("NVIDIA H200", 989e12),
    ("NVIDIA GH200 480GB", 989e12),
    ("NVIDIA B200", 2250e12),
    ("NVIDIA A100-SXM4-80GB", 312e12),
    ("NVIDIA L40S", 362e12),  # not an L4
    ("NVIDIA L4", 121e12),
    ("NVIDIA A10G", 70e12),  # not an A10
    ("NVIDIA A10", 125e12),
    ("Tesla V100-SXM2-16GB", 125e12),
    ("TPU v4", 275e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5", 459e12),
    ("TPU v5p", 459e12),
    ("TPU v6 lite", 918e12),
    ("cpu", None),
    ("NVIDIA RTX A1000", None),  # neither an A100 nor an A10
])
def test_peak_flops_by_device_kind(kind, peak):
    assert metrics.peak_flops(_Device(kind)) == peak


def test_tensorboard_events_without_importing_torch(tmp_path):
    """tensorboardX imports torch when it is installed (1.3 s of every run's start) though
    llmjax only logs floats: the writer must not pull it in, and the events must still land."""
    code = ("import sys; from llmjax.training import metrics; "
            f"w = metrics.MetricsWriter({str(tmp_path)!r}); "
            "w.write({'step': 1, 'split': 'train', 'loss': 2.5}); w.close(); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu"}, check=True).stdout
    assert out.split()[-1] == "False"
    events = os.listdir(tmp_path / "tensorboard")
    assert len(events) == 1 and os.path.getsize(tmp_path / "tensorboard" / events[0]) > 0
