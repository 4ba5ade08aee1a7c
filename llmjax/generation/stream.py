"""Token-by-token generation for a terminal: a Python loop over jitted prefill / extend steps
that yields each token as soon as it exists, and a detokenizer that turns the growing id list
into the text to print next.

stream_tokens draws exactly the tokens decode.generate returns for the same prompt and rng (the
same key splits: one for the first token, then one per step). The prompt is left-padded to a
length bucket (a power of two), so a session compiles prefill and the one-token step once per
bucket rather than once per prompt length.

Shape key: B batch (1), P prompt length (bucketed), V vocabulary.
"""
from __future__ import annotations

import functools
from typing import Any, Iterator, Sequence

import flax.linen as nn
import jax
import numpy as np

from llmjax.generation.decode import extend, init_cache, left_pad, prefill, prompt_mask, sample_token

_MIN_BUCKET = 8
_INCOMPLETE = "\ufffd"  # what a decoder shows for the first bytes of an unfinished character


def bucket_length(prompt_len: int, max_prompt_len: int | None) -> int:
    """The padded prompt length: the next power of two (at least _MIN_BUCKET), kept within the
    model's longest prompt (None: no limit), and never below prompt_len."""
    bucket = max(_MIN_BUCKET, 1 << (prompt_len - 1).bit_length())
    if max_prompt_len is not None:
        bucket = min(bucket, max_prompt_len)
    return max(bucket, prompt_len)


def stream_tokens(model: nn.Module, params: Any, prompt_ids: Sequence[int], *, max_new_tokens: int,
                  rng: jax.Array, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
                  eos_id: int | None = None) -> Iterator[int]:
    """Yield up to max_new_tokens new tokens of one prompt, each as it is drawn; stops after
    eos_id (which is yielded). Temperature 0 is greedy."""
    if max_new_tokens <= 0:
        return
    params = nn.unbox(params)
    tokens_1xP, lengths_1 = left_pad([prompt_ids])
    P = tokens_1xP.shape[1]
    width = bucket_length(P, model.cfg.max_prompt_len(max_new_tokens))
    tokens_1xP = np.pad(tokens_1xP, ((0, 0), (width - P, 0)))  # more (masked) left padding
    mask_1xP = prompt_mask(tokens_1xP, lengths_1)
    how = dict(temperature=float(temperature), top_k=int(top_k), top_p=float(top_p))
    token_1, cache, rng = _first(model, params, tokens_1xP, mask_1xP, rng, max_new_tokens=max_new_tokens,
                                 **how)
    for i in range(max_new_tokens):
        if i:
            token_1, cache, rng = _next(model, params, cache, token_1, rng, **how)
        token = int(token_1[0])
        yield token
        if token == eos_id:
            return


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k", "top_p"))
def _first(model, params, tokens_1xP, mask_1xP, rng, *, max_new_tokens, temperature, top_k, top_p):
    """Prefill and draw the first token, splitting rng as generate does."""
    cache = init_cache(model, tokens_1xP.shape, max_new_tokens)
    logits_1xV, cache = prefill(model, params, cache, tokens_1xP, mask_1xP, max_new_tokens)
    rng, first_rng = jax.random.split(rng)
    return sample_token(logits_1xV, first_rng, temperature=temperature, top_k=top_k, top_p=top_p), cache, rng


@functools.partial(jax.jit, static_argnames=("model", "temperature", "top_k", "top_p"))
def _next(model, params, cache, token_1, rng, *, temperature, top_k, top_p):
    """One token onto the cache and the next drawn, splitting rng as generate's loop does."""
    logits_1xV, cache = extend(model, params, cache, token_1)
    rng, step_rng = jax.random.split(rng)
    return sample_token(logits_1xV, step_rng, temperature=temperature, top_k=top_k, top_p=top_p), cache, rng


class IncrementalDetokenizer:
    """The text of a growing id list, piece by piece: each push returns what to print next.

    It decodes the whole list (plus any context ids, such as the prompt, whose text is not
    returned) every time and returns the new suffix, so pieces whose text depends on their
    neighbours (sentencepiece's leading-space pieces) print as the full decode does; a trailing
    U+FFFD (the first bytes of a character split across byte tokens) is held back until the
    character completes or flush() is called."""

    def __init__(self, tokenizer: Any, context: Sequence[int] = ()):
        self._tokenizer = tokenizer
        self._ids = [int(i) for i in context]
        self._shown = len(tokenizer.decode(self._ids))

    def push(self, token_id: int) -> str:
        """The text that token_id completes (often one piece; "" while a character is unfinished)."""
        self._ids.append(int(token_id))
        return self._take(self._tokenizer.decode(self._ids).rstrip(_INCOMPLETE))

    def flush(self) -> str:
        """Whatever was held back (an unfinished character shows as U+FFFD)."""
        return self._take(self._tokenizer.decode(self._ids))

    def _take(self, text: str) -> str:
        new = text[self._shown:]
        self._shown = max(self._shown, len(text))
        return new
