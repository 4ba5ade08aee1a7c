"""Model families built from blocks; importing this package registers each in the registry."""
from llmjax.models import gpt, registry
from llmjax.models.gpt import GPT, GPTConfig

__all__ = ["GPT", "GPTConfig", "gpt", "registry"]
