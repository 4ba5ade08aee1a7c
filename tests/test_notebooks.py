"""The notebooks run top to bottom: each is executed in a fresh kernel with
LLMJAX_NOTEBOOK_QUICK=1 (a tiny model, a handful of steps) and any cell error fails the test.

The kernel starts in a temporary directory, so the notebook finds the code the way an uploaded
copy does: through LLMJAX_SOURCE (this checkout), with llmjax already importable from it
(PYTHONPATH), so nothing is installed.
"""
import os

import pytest

nbformat = pytest.importorskip("nbformat", reason="executing notebooks needs nbformat (pip install nbformat)")
nbclient = pytest.importorskip("nbclient", reason="executing notebooks needs nbclient (pip install nbclient)")
pytest.importorskip("ipykernel", reason="executing notebooks needs a Python kernel (pip install ipykernel)")
pytest.importorskip("matplotlib", reason="the notebooks plot with matplotlib (pip install matplotlib)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _execute(name: str, cwd: str, monkeypatch) -> nbformat.NotebookNode:
    """The notebook after running every cell (nbclient raises CellExecutionError on an error)."""
    monkeypatch.setenv("LLMJAX_NOTEBOOK_QUICK", "1")
    monkeypatch.setenv("LLMJAX_SOURCE", ROOT)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("MPLBACKEND", "agg")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
    client = nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": cwd}})
    return client.execute()


def _text(nb: nbformat.NotebookNode) -> str:
    return "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))


def test_quickstart_trains_samples_and_plots(tmp_path, monkeypatch):
    nb = _execute("quickstart.ipynb", str(tmp_path), monkeypatch)
    out = _text(nb)
    assert f"llmjax from {ROOT}" in out
    assert "mesh: {'data': " in out
    assert "--- 'def main('" in out and "last eval:" in out
    assert os.path.isfile(tmp_path / "runs" / "gpt_small_quick" / "metrics.jsonl")


def test_committed_notebooks_have_no_outputs():
    """Outputs are cleared before committing: diffs stay readable and no run's results are stored."""
    for name in sorted(os.listdir(os.path.join(ROOT, "notebooks"))):
        if name.endswith(".ipynb"):
            nb = nbformat.read(os.path.join(ROOT, "notebooks", name), as_version=4)
            stored = [i for i, c in enumerate(nb.cells) if c.get("outputs") or c.get("execution_count")]
            assert not stored, f"{name}: cells {stored} hold outputs: clear them before committing"


@pytest.mark.slow  # ~70 s on 2 cores; its sweep, fits and plots are tests/scaling's (test_sweep, test_analysis)
def test_scaling_fits_a_table_runs_a_sweep_and_plots(tmp_path, monkeypatch):
    nb = _execute("scaling.ipynb", str(tmp_path), monkeypatch)
    out = _text(nb)
    assert f"llmjax from {ROOT}" in out and "alpha " in out and "true 0.35" in out
    sweep_dir = tmp_path / "runs" / "sweeps" / "tiny_quick"
    assert (sweep_dir / "results.csv").is_file() and (sweep_dir / "fits.json").is_file()
    assert "gpt: 4 finished runs" in out and (sweep_dir / "plots" / "loss_vs_tokens.png").is_file()
