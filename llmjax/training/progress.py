"""Progress bar and train-row logging: step, loss, tokens/s, MFU (or FLOP/s), ETA.

Throughput is measured over the steps between two log points, from the host clock when
the metrics of a step arrive. The first row after a (re)start has no rate (its window includes
compilation): it logs `startup_sec`, the seconds from the loop's start to that row instead.
"""
from __future__ import annotations

import time
from typing import Any

import jax


class Progress:
    def __init__(self, num_steps: int, start: int, tokens_per_step: int, flops_per_token: float,
                 peak_flops: float | None, num_devices: int, enabled: bool = True):
        self._tokens_per_step = tokens_per_step
        self._fpt = flops_per_token
        self._peak = peak_flops * num_devices if peak_flops else None
        self._last_step, self._last_time = start, None
        self._start_time = time.perf_counter()
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=num_steps, initial=start, unit="step", dynamic_ncols=True,
                             smoothing=0.1)

    def write(self, msg: str) -> None:
        if self._bar is not None:
            self._bar.write(msg)
        elif jax.process_index() == 0:
            print(msg, flush=True)

    def update(self, step: int, metrics: Any, writer, log_every: int) -> None:
        """Called with a step's on-device metrics once a later step is already dispatched."""
        if self._bar is not None:
            self._bar.update(step - self._bar.n)
        if step % log_every and step != 1:
            return
        m = {k: float(v) for k, v in jax.device_get(metrics).items()}
        now = time.perf_counter()
        # Every metric the task reports (loss, z_loss, mlm_accuracy, ...) plus lr and grad_norm;
        # "finite" is the loop's divergence flag, not a metric.
        row = {"step": step, "split": "train", **{k: v for k, v in m.items() if k != "finite"}}
        if self._last_time is not None and step > self._last_step:
            tps = (step - self._last_step) * self._tokens_per_step / (now - self._last_time)
            row["tokens_per_sec"] = tps
            row["flops_per_sec"] = tps * self._fpt
            if self._peak:
                row["mfu"] = row["flops_per_sec"] / self._peak
        else:  # the first logged step of a (re)start: compilation included, so no rate
            row["startup_sec"] = now - self._start_time
        self._last_step, self._last_time = step, now
        writer.write(row)
        if self._bar is not None:
            self._bar.set_postfix({"loss": f"{m['loss']:.4f}", **_speed(row)}, refresh=False)
        else:
            speed = ", ".join(f"{k} {v}" for k, v in _speed(row).items())
            self.write(f"step {step}: loss {m['loss']:.4f}, lr {m['lr']:.3g}, "
                       f"grad_norm {m['grad_norm']:.3f}, {speed}")

    def reset_clock(self) -> None:
        """Start the next throughput window now (after eval or checkpointing)."""
        if self._last_time is not None:
            self._last_time = time.perf_counter()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def with_prefix(value: float, unit: str) -> str:
    """value in the SI prefix that keeps it readable at one decimal ("13.3 kFLOPs", "26.8 MFLOPs"):
    per-token FLOPs span Word2Vec's thousands to a large model's billions."""
    for scale, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if round(abs(value) / scale, 1) >= 1:
            return f"{value / scale:.1f} {prefix}{unit}"
    return f"{value:.1f} {unit}"


def _speed(row: dict[str, float]) -> dict[str, str]:
    """The row's throughput for display: tokens/s and MFU (or FLOP/s), or the startup time."""
    if "startup_sec" in row:
        return {"startup (incl. compile)": f"{row['startup_sec']:.1f}s"}
    speed = {"tok/s": f"{row['tokens_per_sec']:,.0f}"}
    if "mfu" in row:
        speed["mfu"] = f"{100 * row['mfu']:.1f}%"
    else:
        speed["flop/s"] = f"{row['flops_per_sec']:.3g}"
    return speed
