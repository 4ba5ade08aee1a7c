"""Imports point down: blocks see no models/tasks/training/data/config, data and evaluation see no
models, models see no interop (the Hugging Face bridge sits above them, below the entry
points), and the training loop never names a model family or a task (it gets them through
the registries and the Task interface)."""
import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "llmjax"


def _imports(path: pathlib.Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
    return {n for n in names if n.startswith("llmjax")}


@pytest.mark.parametrize("folder, forbidden", [
    ("blocks", ("llmjax.models", "llmjax.tasks", "llmjax.training", "llmjax.data", "llmjax.experiment",
                "llmjax.config")),
    ("data", ("llmjax.models", "llmjax.tasks", "llmjax.training", "llmjax.blocks", "llmjax.experiment")),
    ("evaluation", ("llmjax.models", "llmjax.tasks", "llmjax.training", "llmjax.blocks",
                    "llmjax.data", "llmjax.experiment")),
    ("models", ("llmjax.tasks", "llmjax.training", "llmjax.data.", "llmjax.experiment", "llmjax.interop")),
    ("interop", ("llmjax.tasks", "llmjax.training", "llmjax.generation", "llmjax.experiment",
                 "llmjax.sample", "llmjax.main")),
    ("training", ("llmjax.models.gpt", "llmjax.tasks.lm", "llmjax.experiment", "llmjax.data")),
])
def test_imports_point_down(folder, forbidden):
    for path in sorted((PKG / folder).glob("*.py")):
        bad = sorted(n for n in _imports(path) if n.startswith(forbidden))
        assert not bad, f"{path.relative_to(PKG)} imports {bad}"
