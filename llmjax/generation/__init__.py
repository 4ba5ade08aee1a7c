"""Text generation from trained models: sampling and beam search on each family's cache."""
from llmjax.generation.decode import (extend, filter_logits, generate, init_cache, left_pad, prefill,
                                      prompt_mask, sample_token)

__all__ = ["extend", "filter_logits", "generate", "init_cache", "left_pad", "prefill", "prompt_mask",
           "sample_token"]
