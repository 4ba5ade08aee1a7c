"""Autoregressive sampling on the KV cache: prefill the prompt in one call, then one jitted
`lax.while_loop` emits token after token with no host round trip.

Small pieces (cache init, prefill, step, logit filtering, sampling) so beam search and
streaming can reuse them.

Shape key: B batch, P prompt length, N new tokens, V vocabulary.
"""
from __future__ import annotations

import functools
from typing import Any

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


def init_cache(model: nn.Module, batch: int, length: int) -> Any:
    """A zero KV cache for `length` tokens per row, without running the model (eval_shape)."""
    dummy = jnp.zeros((batch, length), jnp.int32)
    shapes = jax.eval_shape(functools.partial(model.init, decode=True), jax.random.key(0), dummy)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), shapes["cache"])


def decode_step(model: nn.Module, params: Any, cache: Any, tokens_BxL: jnp.ndarray):
    """Feed L tokens (prompt prefill or one new token); return last-position logits and cache."""
    logits_BxLxV, mutated = model.apply({"params": params, "cache": cache}, tokens_BxL,
                                        decode=True, mutable=["cache"])
    return logits_BxLxV[:, -1], mutated["cache"]


# ---------------------------------------------------------------- generation


def generate(model: nn.Module, params: Any, prompt_BxP: np.ndarray | jax.Array, *,
             max_new_tokens: int, rng: jax.Array, temperature: float = 1.0, top_k: int = 0,
             top_p: float = 1.0, eos_id: int | None = None) -> np.ndarray:
    """Continue each prompt row by max_new_tokens tokens: int32 (B, max_new_tokens).

    temperature 0 is greedy. After a row emits eos_id it emits only eos_id (and the loop stops
    early once every row has). All rows share the prompt length (left-pad upstream if needed)."""
    prompt_BxP = jnp.asarray(prompt_BxP, jnp.int32)
    if prompt_BxP.ndim != 2:
        raise ValueError(f"prompt must be (batch, length), got shape {prompt_BxP.shape}")
    total, max_len = prompt_BxP.shape[1] + max_new_tokens, model.cfg.max_len
    if total > max_len:
        raise ValueError(f"prompt length {prompt_BxP.shape[1]} + max_new_tokens {max_new_tokens} = "
                         f"{total} exceeds the model's max_len {max_len}: shorten one of them")
    if max_new_tokens <= 0:
        return np.zeros((prompt_BxP.shape[0], 0), np.int32)
    params = nn.unbox(params)
    out = _generate_jit(model, params, prompt_BxP, rng, max_new_tokens=max_new_tokens,
                        temperature=float(temperature), top_k=int(top_k), top_p=float(top_p),
                        eos_id=eos_id)
    return np.asarray(out)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens", "temperature", "top_k",
                                             "top_p", "eos_id"))
def _generate_jit(model, params, prompt_BxP, rng, *, max_new_tokens, temperature, top_k, top_p,
                  eos_id):
    B, P = prompt_BxP.shape
    sample = functools.partial(sample_token, temperature=temperature, top_k=top_k, top_p=top_p)
    cache = init_cache(model, B, P + max_new_tokens)
    logits_BxV, cache = decode_step(model, params, cache, prompt_BxP)
    rng, first_rng = jax.random.split(rng)
    token_B = sample(logits_BxV, first_rng)
    fill = 0 if eos_id is None else eos_id
    out_BxN = jnp.full((B, max_new_tokens), fill, jnp.int32).at[:, 0].set(token_B)
    done_B = jnp.zeros((B,), bool) if eos_id is None else token_B == eos_id

    def cond(state):
        i, _, _, _, done_B, _ = state
        return (i < max_new_tokens) & ~jnp.all(done_B)

    def body(state):
        i, token_B, cache, out_BxN, done_B, rng = state
        logits_BxV, cache = decode_step(model, params, cache, token_B[:, None])
        rng, step_rng = jax.random.split(rng)
        token_B = sample(logits_BxV, step_rng)
        if eos_id is not None:
            token_B = jnp.where(done_B, eos_id, token_B)
            done_B = done_B | (token_B == eos_id)
        out_BxN = lax.dynamic_update_slice(out_BxN, token_B[:, None], (0, i))
        return i + 1, token_B, cache, out_BxN, done_B, rng

    state = (jnp.int32(1), token_B, cache, out_BxN, done_B, rng)
    return lax.while_loop(cond, body, state)[3]
