"""Text generation from trained models: sampling and beam search on each family's cache."""
from llmjax.generation.decode import (extend, filter_logits, generate, init_cache, left_pad, prefill,
                                      prompt_mask, sample_token)
from llmjax.generation.beam import beam_search
from llmjax.generation.stream import IncrementalDetokenizer, stream_tokens

__all__ = ["IncrementalDetokenizer", "beam_search", "extend", "filter_logits", "generate", "init_cache",
           "left_pad", "prefill", "prompt_mask", "sample_token", "stream_tokens"]
