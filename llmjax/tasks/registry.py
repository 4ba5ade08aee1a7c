"""Tasks: name -> (config dataclass, Task class). Each task registers itself beside its code.

A task's config is a frozen dataclass whose fields are the keys of `config.task` (at least
`name`), with a `validate()` method like the model families'.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import ml_collections

from llmjax.config import ConfigError, from_group, to_group


@dataclasses.dataclass(frozen=True)
class TaskEntry:
    name: str
    config_cls: type
    task_cls: type


_TASKS: dict[str, TaskEntry] = {}


def register(name: str, config_cls: type) -> Callable[[type], type]:
    def wrap(task_cls: type) -> type:
        if name in _TASKS and _TASKS[name].task_cls is not task_cls:
            raise ValueError(f"task {name!r} is already registered")
        _TASKS[name] = TaskEntry(name, config_cls, task_cls)
        return task_cls
    return wrap


def entry(name: str) -> TaskEntry:
    _load()
    if name not in _TASKS:
        raise ConfigError(f"config.task.name={name!r}: unknown task; registered: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def default_group(name: str) -> ml_collections.ConfigDict:
    return to_group(entry(name).config_cls)


def resolve(group: Any) -> Any:
    return from_group(entry(group.get("name", "")).config_cls, group, "task")


def build(run: Any) -> Any:
    """The Task for run.task (a resolved task config)."""
    return entry(run.task.name).task_cls(run)


def _load() -> None:
    import llmjax.tasks  # noqa: F401  (importing the package registers every task)
