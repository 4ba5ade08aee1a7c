"""Metrics: the workdir's metrics.jsonl (plus TensorBoard events), FLOPs and MFU.

metrics.jsonl is append-only during a run; on resume, rows written after the restored
checkpoint (by the run that was killed) move to metrics.discarded.jsonl, so the file reads as
one clean run and nothing written is lost.
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
from typing import Any

import jax
import numpy as np

# Dense (not 2:4 sparse) bf16 peak FLOP/s per device, keyed by jax's device_kind. A key matches
# when its words appear in order and whole in the kind's words ("NVIDIA L40S" is no "L4"); the
# key with the most words wins ("TPU v5 lite" is v5e, plain "TPU v5" is v5p).
PEAK_FLOPS = {
    "B200": 2250e12,
    "GB200": 2500e12,
    "H200": 989e12,
    "GH200": 989e12,
    "H100": 989e12,  # SXM
    "H100 PCIe": 756e12,
    "H100 NVL": 835e12,
    "H800": 989e12,
    "H800 PCIe": 756e12,
    "A100": 312e12,
    "L40S": 362e12,
    "L40": 181e12,
    "L4": 121e12,
    "A10": 125e12,
    "A10G": 70e12,
    "V100": 125e12,  # fp16: no bf16 on Volta
    "T4": 65e12,  # fp16
    "TPU7x": 2307e12,
    "TPU v6 lite": 918e12,
    "TPU v6e": 918e12,
    "TPU v5": 459e12,
    "TPU v5p": 459e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v4": 275e12,
    "TPU v3": 123e12,
    "TPU v2": 45e12,
}


def _words(text: str) -> tuple[str, ...]:
    return tuple(re.findall(r"[a-z0-9]+", text.lower()))


_PEAK_BY_WORDS = sorted(((_words(k), v) for k, v in PEAK_FLOPS.items()), key=lambda kv: -len(kv[0]))


def peak_flops(device: jax.Device | None = None) -> float | None:
    """The device's dense bf16 peak, or None when unknown (then FLOP/s is shown, not MFU)."""
    kind = _words((device or jax.devices()[0]).device_kind)
    for key, flops in _PEAK_BY_WORDS:
        if any(kind[i:i + len(key)] == key for i in range(len(kind) - len(key) + 1)):
            return flops
    return None


def cpu_name() -> str:
    """The host processor's model name (what a CPU table's figures were measured on)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or platform.machine()


def bits_per_byte(nll_sum: float, byte_sum: float) -> float:
    return nll_sum / (math.log(2) * max(byte_sum, 1.0))


def jsonable(value: Any) -> Any:
    """value with numpy/jax numbers as floats, arrays as (nested) lists, dicts and lists kept:
    eval rows may hold per-class figures and a confusion matrix."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (str, bool, int)) or value is None:
        return value
    arr = np.asarray(value)
    if arr.ndim:
        return jsonable(arr.tolist())
    return float(arr)


def write_results(workdir: str, results: dict[str, Any]) -> str:
    """The run's final metrics and baselines as workdir/results.json (process 0, atomic)."""
    return write_json(workdir, "results.json", results)


def write_json(workdir: str, name: str, value: Any) -> str:
    """workdir/<name> as JSON (process 0, atomic)."""
    path = os.path.join(workdir, name)
    if jax.process_index() == 0:
        with open(path + ".tmp", "w") as f:
            json.dump(jsonable(value), f, indent=1)
        os.replace(path + ".tmp", path)
    return path


def write_eval_details(workdir: str, step: int, details: dict[str, Any]) -> None:
    """Each detail as workdir/eval/<name>.json = {"step": step, name: value}: the newest eval's
    (process 0, atomic; a resumed run overwrites them at its next eval)."""
    if not details or jax.process_index() != 0:
        return
    directory = os.path.join(workdir, "eval")
    os.makedirs(directory, exist_ok=True)
    for name, value in details.items():
        path = os.path.join(directory, f"{name}.json")
        with open(path + ".tmp", "w") as f:
            json.dump(jsonable({"step": step, name: value}), f)
        os.replace(path + ".tmp", path)


def _summary_writer():
    """tensorboardX's SummaryWriter, imported with torch hidden: tensorboardX imports torch
    where it is installed (1.3 s of every run's start on a CPU) only to accept torch tensors,
    and llmjax logs floats."""
    hide = "torch" not in sys.modules
    if hide:
        sys.modules["torch"] = None  # makes `import torch` raise ImportError
    try:
        from tensorboardX import SummaryWriter
    finally:
        if hide and sys.modules.get("torch", 0) is None:
            del sys.modules["torch"]
    return SummaryWriter


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
                self._tb = _summary_writer()(os.path.join(workdir, "tensorboard"))
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
        clean = jsonable(row)
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
