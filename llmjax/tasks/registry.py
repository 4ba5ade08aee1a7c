"""Tasks: name -> (config dataclass, Task class), registered beside each task with
`@register("lm", LMTaskConfig)`. A task's config is a frozen dataclass whose fields are the keys
of `config.task` (at least `name`), with a `validate()` method like the model families'.
"""
from __future__ import annotations

from typing import Any

from llmjax.config import Registry


def _load() -> None:
    import llmjax.tasks  # noqa: F401  (importing the package registers every task)


TASKS = Registry("task", "task", _load)
register, names, default_group, resolve = TASKS.register, TASKS.names, TASKS.default_group, TASKS.resolve


def build(run: Any) -> Any:
    """The Task for run.task (a resolved task config)."""
    return TASKS.entry(run.task.name).target(run)
