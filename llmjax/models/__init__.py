"""Models built from blocks; importing this package registers each one in the registry."""
from llmjax.models import registry
from llmjax.models.gpt import GPT, flops_per_token, matmul_params, num_params
from llmjax.models.registry import build, register

__all__ = ["GPT", "build", "flops_per_token", "matmul_params", "num_params", "register", "registry"]
