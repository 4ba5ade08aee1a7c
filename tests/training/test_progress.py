"""Train-row logging: the first row after a (re)start reports its startup time, not a rate."""
import time

import numpy as np

from llmjax.training.progress import Progress, with_prefix


class _Rows:
    def __init__(self):
        self.rows = []

    def write(self, row):
        self.rows.append(row)


def _metrics(loss):
    return {"loss": np.float32(loss), "lr": np.float32(1e-3), "grad_norm": np.float32(0.5)}


def test_first_row_has_startup_seconds_and_no_fake_rate():
    progress = Progress(num_steps=20, start=10, tokens_per_step=1024, flops_per_token=6e6,
                        peak_flops=1e12, num_devices=2, enabled=False)
    rows = _Rows()
    time.sleep(0.2)  # stands in for compilation
    progress.update(15, _metrics(3.0), rows, log_every=5)
    time.sleep(0.1)
    progress.update(20, _metrics(2.5), rows, log_every=5)
    first, second = rows.rows
    assert first["step"] == 15 and first["startup_sec"] >= 0.2
    assert not {"tokens_per_sec", "flops_per_sec", "mfu"} & set(first)
    assert "startup_sec" not in second
    elapsed = 5 * 1024 / second["tokens_per_sec"]
    assert 0.1 <= elapsed < 1.0
    want_mfu = second["tokens_per_sec"] * 6e6 / 2e12
    assert np.isclose(second["mfu"], want_mfu)


def test_rows_carry_every_task_metric_but_not_the_divergence_flag():
    progress = Progress(num_steps=2, start=0, tokens_per_step=8, flops_per_token=1.0,
                        peak_flops=None, num_devices=1, enabled=False)
    rows = _Rows()
    m = {**_metrics(3.0), "mlm_accuracy": np.float32(0.25), "nsp_loss": np.float32(0.7),
         "finite": np.bool_(True)}
    progress.update(1, m, rows, log_every=1)
    row = rows.rows[0]
    assert row["mlm_accuracy"] == 0.25 and np.isclose(row["nsp_loss"], 0.7) and "finite" not in row


def test_with_prefix_picks_the_unit_that_fits_each_magnitude():
    # Word2Vec's ~13k FLOPs a word read "0.0 MFLOPs/token" under a fixed unit
    assert with_prefix(13_312, "FLOPs") == "13.3 kFLOPs"
    assert with_prefix(26.8e6, "FLOPs") == "26.8 MFLOPs"
    assert with_prefix(1.2e9, "FLOPs") == "1.2 GFLOPs"
    assert with_prefix(512, "FLOPs") == "512.0 FLOPs"
    assert with_prefix(999.97e3, "FLOPs") == "1.0 MFLOPs"  # never "1000.0 kFLOPs"
