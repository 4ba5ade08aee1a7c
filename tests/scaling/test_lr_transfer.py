"""experiments/lr_transfer.py on a hand-made results table: the best lr per parametrization and
width, diverged runs skipped, and the plot."""
import csv
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOSSES = {  # (parametrization, width) -> loss at lr 2^-10, 2^-8, 2^-6 ("" = diverged)
    ("standard", 32): (2.5, 2.2, 2.4), ("standard", 256): (2.1, 2.3, ""),
    ("mup", 32): (2.5, 2.2, 2.4), ("mup", 256): (2.3, 2.0, 2.2),
}


def _run(tmp_path, *flags):
    with open(tmp_path / "results.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["name", "status", "model.parametrization", "model.d_model", "optim.lr",
                               "final_eval_loss"])
        w.writeheader()
        for (p, width), losses in LOSSES.items():
            for e, loss in zip((-10, -8, -6), losses):
                w.writerow({"name": f"{p}{width}{e}", "status": "done" if loss else "failed",
                            "model.parametrization": p, "model.d_model": width, "optim.lr": 2.0 ** e,
                            "final_eval_loss": loss})
    return subprocess.run([sys.executable, "experiments/lr_transfer.py", f"--sweep_dir={tmp_path}", *flags],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_prints_the_best_lr_per_width(tmp_path):
    p = _run(tmp_path)
    assert p.returncode == 0, p.stderr[-2000:]
    rows = {tuple(line.split()[:2]): line.split()[2:] for line in p.stdout.splitlines()[1:]}
    assert rows[("standard", "32")][:2] == ["3.91e-03", "2.200"]
    assert rows[("standard", "256")][:2] == ["9.77e-04", "2.100"] and rows[("standard", "256")][-1] == "-"
    assert rows[("mup", "256")][:2] == ["3.91e-03", "2.000"]


def test_plot(tmp_path):
    pytest.importorskip("matplotlib")
    p = _run(tmp_path, f"--plot={tmp_path / 'lr.png'}")
    assert p.returncode == 0, p.stderr[-2000:]
    assert os.path.getsize(tmp_path / "lr.png") > 10_000


def test_missing_table_is_one_line(tmp_path):
    p = subprocess.run([sys.executable, "experiments/lr_transfer.py", f"--sweep_dir={tmp_path}"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0 and p.stderr.strip().count("\n") == 0 and "results.csv is missing" in p.stderr
