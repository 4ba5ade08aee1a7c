"""Metrics: the workdir's metrics.jsonl (plus TensorBoard events), FLOPs and MFU.

metrics.jsonl is append-only during a run; on resume, rows written after the restored
checkpoint (by the run that was killed) move to metrics.discarded.jsonl, so the file reads as
one clean run and nothing written is lost.
"""
from __future__ import annotations

import json
import math
import os
from typing import Any

import jax

# Dense bf16 peak FLOP/s per device, by a substring of jax's device_kind.
PEAK_FLOPS = (
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
    ("A10", 125e12),
    ("V100", 125e12),
    ("TPU v6", 918e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v4", 275e12),
    ("TPU v3", 123e12),
    ("TPU v2", 45e12),
)


def peak_flops(device: jax.Device | None = None) -> float | None:
    """The device's dense bf16 peak, or None when unknown (then FLOP/s is shown, not MFU)."""
    kind = (device or jax.devices()[0]).device_kind
    for key, flops in PEAK_FLOPS:
        if key.lower() in kind.lower():
            return flops
    return None


def bits_per_byte(nll_sum: float, byte_sum: float) -> float:
    return nll_sum / (math.log(2) * max(byte_sum, 1.0))


class MetricsWriter:
    """Writes one JSON object per logged step; process 0 only."""

    def __init__(self, workdir: str, resume_step: int = 0, tensorboard: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._discarded = os.path.join(workdir, "metrics.discarded.jsonl")
        self._active = jax.process_index() == 0
        self._tb = None
        if not self._active:
            return
        if resume_step is not None:
            self._rewind(resume_step)
        if tensorboard:
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:
                self._tb = None

    def _rewind(self, step: int) -> None:
        if not os.path.exists(self.path):
            return
        with open(self.path) as f:
            lines = [l for l in f if l.strip()]
        keep, drop = [], []
        for line in lines:
            try:
                row_step = json.loads(line).get("step", 0)
            except json.JSONDecodeError:  # a line cut by a kill mid-write
                drop.append(line if line.endswith("\n") else line + "\n")
                continue
            (keep if row_step <= step else drop).append(line)
        if drop:
            with open(self._discarded, "a") as f:
                f.writelines(drop)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.writelines(keep)
        os.replace(tmp, self.path)

    def write(self, row: dict[str, Any]) -> None:
        if not self._active:
            return
        clean = {k: (float(v) if not isinstance(v, (str, int)) else v) for k, v in row.items()}
        with open(self.path, "a") as f:
            f.write(json.dumps(clean) + "\n")
        if self._tb is not None:
            split = clean.get("split", "train")
            for k, v in clean.items():
                if k not in ("step", "split") and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"{split}/{k}", v, clean["step"])

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
