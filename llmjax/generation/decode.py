"""Autoregressive sampling on the KV cache: prefill the prompt in one call, then one jitted
`lax.while_loop` emits token after token with no host round trip.

Any family that implements the generation protocol decodes here (GPT, the encoder-decoder, the
LSTM), through three linen methods of its module:
  prefill(prompt_BxP, mask_BxP, *, max_new_tokens) -> logits_BxV   run left-padded prompts (mask
      1 = token, 0 = padding) onto a fresh cache (KV cache, encoder output and cross-attention
      keys, or recurrent state) with room for max_new_tokens; under init it creates that cache;
  extend(token_B) -> logits_BxV                                   one new token per row;
  score(prompt_BxP, mask_BxP, continuation_BxN) -> logits_Bx(N+1)xV  the same logits without a
      cache, from one forward (uncached decoding, tests).
Each row continues exactly as it would alone: padding is masked and positions start at each
row's first real token.

Small pieces (cache init, prefill, extend, logit filtering, sampling) so beam search and
streaming reuse them.

Shape key: B batch, P prompt length, N new tokens, V vocabulary.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

_NEG_INF = -jnp.inf


# ---------------------------------------------------------------- logits -> token


def filter_logits(logits_BxV: jnp.ndarray, *, top_k: int = 0, top_p: float = 1.0) -> jnp.ndarray:
    """Set to -inf every logit outside the top-k and outside the nucleus (the smallest set of
    most likely tokens whose probability reaches top_p). top_k=0 / top_p=1 switch them off."""
    logits_BxV = logits_BxV.astype(jnp.float32)
    if top_k > 0 and top_k < logits_BxV.shape[-1]:
        kth_Bx1 = lax.top_k(logits_BxV, top_k)[0][:, -1:]
        logits_BxV = jnp.where(logits_BxV < kth_Bx1, _NEG_INF, logits_BxV)
    if top_p < 1.0:
        order_BxV = jnp.argsort(-logits_BxV, axis=-1)
        sorted_BxV = jnp.take_along_axis(logits_BxV, order_BxV, axis=-1)
        probs_BxV = jax.nn.softmax(sorted_BxV, axis=-1)
        mass_before_BxV = jnp.cumsum(probs_BxV, axis=-1) - probs_BxV
        keep_sorted_BxV = mass_before_BxV < top_p  # the top token always stays
        keep_BxV = jnp.zeros_like(keep_sorted_BxV).at[
            jnp.arange(logits_BxV.shape[0])[:, None], order_BxV].set(keep_sorted_BxV)
        logits_BxV = jnp.where(keep_BxV, logits_BxV, _NEG_INF)
    return logits_BxV


def sample_token(logits_BxV: jnp.ndarray, rng: jax.Array, *, temperature: float = 1.0,
                 top_k: int = 0, top_p: float = 1.0) -> jnp.ndarray:
    """One token per row: argmax at temperature 0, else a draw from the filtered softmax."""
    if temperature == 0.0:
        return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
    logits_BxV = filter_logits(logits_BxV.astype(jnp.float32) / temperature, top_k=top_k, top_p=top_p)
    return jax.random.categorical(rng, logits_BxV, axis=-1).astype(jnp.int32)


# ---------------------------------------------------------------- the model on its cache


def init_cache(model: nn.Module, prompt_shape: tuple[int, int], max_new_tokens: int) -> Any:
    """A zero cache for prompts of prompt_shape (B, P) and max_new_tokens more tokens, without
    running the model (eval_shape of the model's prefill under init)."""
    dummy = jnp.zeros(prompt_shape, jnp.int32)
    shapes = jax.eval_shape(functools.partial(model.init, method="prefill", max_new_tokens=max_new_tokens),
                            jax.random.key(0), dummy, dummy)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def prefill(model: nn.Module, params: Any, cache: Any, prompt_BxP: jnp.ndarray, mask_BxP: jnp.ndarray,
            max_new_tokens: int) -> tuple[jnp.ndarray, Any]:
    """The prompts (left-padded, mask 1 = token) into the cache: (first new token's logits, cache)."""
    logits_BxV, mutated = model.apply({"params": params, "cache": cache}, prompt_BxP, mask_BxP,
                                      max_new_tokens=max_new_tokens, method="prefill", mutable=["cache"])
    return logits_BxV, mutated["cache"]


def extend(model: nn.Module, params: Any, cache: Any, token_B: jnp.ndarray) -> tuple[jnp.ndarray, Any]:
    """One new token per row onto the cache: (next logits, cache)."""
    logits_BxV, mutated = model.apply({"params": params, "cache": cache}, token_B, method="extend",
                                      mutable=["cache"])
    return logits_BxV, mutated["cache"]


def left_pad(prompts: Sequence[Sequence[int]] | np.ndarray, lengths: Sequence[int] | None = None,
             pad_id: int = 0, pad_to: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Prompts -> (tokens (B, P) int32 left-padded with pad_id, lengths (B,)).

    prompts: a list of token-id lists of any lengths, a (B, P) array of whole prompts, or a
    (B, P) array whose row i holds its prompt in its first lengths[i] entries. P is the longest
    prompt, or pad_to when that is more (batches of one shape share one compilation)."""
    if lengths is not None:
        rows = np.asarray(prompts)
        fits = rows.ndim == 2 and len(lengths) == rows.shape[0]
        if not fits or not all(0 <= n <= rows.shape[1] for n in lengths):
            raise ValueError(f"lengths {list(lengths)} do not fit prompts of shape {rows.shape}: give one "
                             "length per row, each at most the row's width")
        prompts = [row[:n] for row, n in zip(rows, lengths)]
    elif isinstance(prompts, (np.ndarray, jax.Array)) and np.ndim(prompts) != 2:
        raise ValueError(f"prompt must be (batch, length), got shape {np.shape(prompts)}")
    prompts = [np.asarray(p, np.int32).reshape(-1) for p in prompts]
    for i, p in enumerate(prompts):
        if not len(p):
            raise ValueError(f"prompt {i} is empty: every row needs at least one token")
    lengths_B = np.asarray([len(p) for p in prompts], np.int32)
    tokens_BxP = np.full((len(prompts), max(int(lengths_B.max()), pad_to)), pad_id, np.int32)
    for row, p in zip(tokens_BxP, prompts):
        row[len(row) - len(p):] = p
    return tokens_BxP, lengths_B


# ---------------------------------------------------------------- generation


def prompt_mask(tokens_BxP: np.ndarray, lengths_B: np.ndarray) -> np.ndarray:
    """1 on each left-padded row's last lengths[i] columns (its prompt), 0 on the padding."""
    column_BxP = np.arange(tokens_BxP.shape[1])[None]
    return (column_BxP >= tokens_BxP.shape[1] - np.asarray(lengths_B)[:, None]).astype(np.int32)


def generate(model: nn.Module, params: Any, prompts: Sequence[Sequence[int]] | np.ndarray | jax.Array,
             *, max_new_tokens: int, rng: jax.Array, lengths: Sequence[int] | None = None,
             temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
             eos_id: int | None = None, use_cache: bool = True, pad_to: int = 0) -> np.ndarray:
    """Continue each prompt by max_new_tokens tokens: int32 (B, max_new_tokens).

    prompts: a list of token-id lists (any lengths), a (B, P) array of whole prompts, or a
    (B, P) array plus `lengths` (row i's prompt is its first lengths[i] entries); left-padded to
    at least pad_to columns (left_pad). For an
    encoder-decoder the prompt is the source. Each row generates what it would alone. temperature
    0 is greedy. After a row emits eos_id it emits only eos_id (and the loop stops early once
    every row has). use_cache=False recomputes the whole sequence for every token (the
    reference the cache must match; slow)."""
    tokens_BxP, lengths_B = left_pad(prompts, lengths, pad_to=pad_to)
    if max_new_tokens <= 0:
        return np.zeros((tokens_BxP.shape[0], 0), np.int32)
    params = nn.unbox(params)
    out = _generate_jit(model, params, tokens_BxP, prompt_mask(tokens_BxP, lengths_B), rng,
                        max_new_tokens=max_new_tokens, temperature=float(temperature), top_k=int(top_k),
                        top_p=float(top_p), eos_id=eos_id, use_cache=use_cache)
    return np.asarray(out)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k",
                                             "top_p", "eos_id", "use_cache"))
def _generate_jit(model, params, tokens_BxP, mask_BxP, rng, *, max_new_tokens, temperature, top_k,
                  top_p, eos_id, use_cache):
    B = tokens_BxP.shape[0]
    sample = functools.partial(sample_token, temperature=temperature, top_k=top_k, top_p=top_p)
    fill = 0 if eos_id is None else eos_id
    out_BxN = jnp.full((B, max_new_tokens), fill, jnp.int32)
    if use_cache:
        cache = init_cache(model, tokens_BxP.shape, max_new_tokens)
        logits_BxV, cache = prefill(model, params, cache, tokens_BxP, mask_BxP, max_new_tokens)
    else:  # every step scores the whole fixed-size buffer; column i predicts new token i
        cache = None
        logits_BxV = model.apply({"params": params}, tokens_BxP, mask_BxP, out_BxN, method="score")[:, 0]

    def next_logits(cache, out_BxN, token_B, i):
        if use_cache:
            return extend(model, params, cache, token_B)
        logits_BxNxV = model.apply({"params": params}, tokens_BxP, mask_BxP, out_BxN, method="score")
        return lax.dynamic_index_in_dim(logits_BxNxV, i, axis=1, keepdims=False), cache

    rng, first_rng = jax.random.split(rng)
    token_B = sample(logits_BxV, first_rng)
    out_BxN = out_BxN.at[:, 0].set(token_B)
    done_B = jnp.zeros((B,), bool) if eos_id is None else token_B == eos_id

    def cond(state):
        i, _, _, _, done_B, _ = state
        return (i < max_new_tokens) & ~jnp.all(done_B)

    def body(state):
        i, token_B, cache, out_BxN, done_B, rng = state
        logits_BxV, cache = next_logits(cache, out_BxN, token_B, i)
        rng, step_rng = jax.random.split(rng)
        token_B = sample(logits_BxV, step_rng)
        if eos_id is not None:
            token_B = jnp.where(done_B, eos_id, token_B)
            done_B = done_B | (token_B == eos_id)
        out_BxN = lax.dynamic_update_slice(out_BxN, token_B[:, None], (0, i))
        return i + 1, token_B, cache, out_BxN, done_B, rng

    state = (jnp.int32(1), token_B, cache, out_BxN, done_B, rng)
    return lax.while_loop(cond, body, state)[3]
