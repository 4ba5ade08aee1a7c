"""Text generation from trained models (sampling on the KV cache)."""
from llmjax.generation.decode import (decode_step, filter_logits, generate, init_cache, left_pad,
                                      sample_token)

__all__ = ["decode_step", "filter_logits", "generate", "init_cache", "left_pad", "sample_token"]
