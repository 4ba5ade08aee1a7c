"""Tasks: what the one training loop trains; importing this package registers each one."""
from llmjax.tasks import lm, registry
from llmjax.tasks.base import Task

__all__ = ["Task", "lm", "registry"]
