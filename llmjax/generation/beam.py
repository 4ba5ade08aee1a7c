"""Beam search on any family's cache (the generation protocol of decode.py), in one jitted
`lax.while_loop`, after Flax's WMT example and T5X: alive and finished beams, the GNMT length
penalty, early exit once no alive beam can win.

Scoring. A hypothesis is the new tokens only (the prompt is not counted). Its length L is the
number of new tokens including the EOS that ends it, and its score is
    log p(tokens | prompt) / ((5 + L) / 6) ** alpha + length_reward * L
(alpha 0 and length_reward 0: the plain log-probability). The reward is the remedy for short
output that Murray & Chiang 2018 tune on a dev set (a per-token bonus; the penalty's division
cannot lengthen an output whose every continuation is unlikely).
A hypothesis finishes when it emits eos_id, and only if that EOS candidate ranks among the
step's top beam_size candidates (Hugging Face's rule: it would have been in the beam), so
beam_size 1 with alpha 0 is greedy decoding. Finished hypotheses are padded with eos_id. One
that reaches max_new_tokens without EOS counts as a hypothesis of length max_new_tokens and
competes with the finished ones on the same score. The search keeps beam_size finished
hypotheses and stops early when the worst of them beats the best score any alive beam could
still reach (its log-probability can only fall; the penalty is largest at one end of the
remaining lengths).

The cache holds B * beam_size rows (the prompts repeated, prefilled once); after every step each
cache leaf is reordered by the surviving beams' parents along its batch axis, found by
comparing the cache's shapes at two batch sizes (so a scanned stack's leading layer axis, or a
leaf shared by all rows, needs no knowledge of the family).

Shape key: B batch, K beams, P prompt length, N new tokens, V vocabulary, R returned hypotheses.
"""
from __future__ import annotations

import functools
from typing import Any, NamedTuple, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from llmjax.generation.decode import extend, init_cache, left_pad, prefill, prompt_mask


def length_penalty(length: jnp.ndarray | int, alpha: float) -> jnp.ndarray:
    """GNMT's ((5 + length) / 6) ** alpha (Wu et al. 2016), the divisor of a log-probability."""
    return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def hypothesis_score(logp: jnp.ndarray, length: jnp.ndarray | int, alpha: float,
                     length_reward: float = 0.0) -> jnp.ndarray:
    """A hypothesis's score: its log-probability over the length penalty, plus length_reward per
    token (Murray & Chiang 2018's word reward, Marian's --word-penalty with the sign flipped)."""
    return logp / length_penalty(length, alpha) + length_reward * jnp.asarray(length, jnp.float32)


def cache_batch_axes(model: nn.Module, prompt_len: int, max_new_tokens: int) -> list[int | None]:
    """For each cache leaf (in tree-flatten order) the axis that grows with the batch, or None for
    a leaf all rows share (a fill index); from the cache's shapes at batch sizes 1 and 2."""
    one, two = (jax.tree_util.tree_leaves(jax.eval_shape(lambda: init_cache(model, (b, prompt_len),
                                                                            max_new_tokens)))
                for b in (1, 2))
    axes = []
    for a, b in zip(one, two):
        differ = [i for i, (m, n) in enumerate(zip(a.shape, b.shape)) if m != n]
        if len(differ) > 1:
            raise ValueError(f"a cache leaf of shape {a.shape} grows with the batch along several axes "
                             f"{differ}: beam search needs one batch axis per cache leaf")
        axes.append(differ[0] if differ else None)
    return axes


def reorder_cache(cache: Any, axes: list[int | None], rows: jnp.ndarray) -> Any:
    """Each cache leaf's rows picked by rows (flat indices) along its batch axis."""
    leaves, treedef = jax.tree_util.tree_flatten(cache)
    return treedef.unflatten([leaf if axis is None else jnp.take(leaf, rows, axis=axis)
                              for leaf, axis in zip(leaves, axes)])


class _Beams(NamedTuple):
    i: jnp.ndarray                   # new tokens chosen so far
    alive_seq_BxKxN: jnp.ndarray     # int32, eos_id past column i
    alive_logp_BxK: jnp.ndarray      # float32 log-probability; -inf for an empty slot
    finished_seq_BxKxN: jnp.ndarray
    finished_score_BxK: jnp.ndarray  # float32 length-penalised; -inf for an empty slot
    cache: Any                       # B*K rows, row b*K + k is beam k of prompt b


def beam_search(model: nn.Module, params: Any, prompts: Sequence[Sequence[int]] | np.ndarray | jax.Array,
                *, beam_size: int, max_new_tokens: int, eos_id: int, alpha: float = 0.6,
                num_return: int = 1, lengths: Sequence[int] | None = None,
                no_repeat_ngram: int = 0, length_reward: float = 0.0, pad_to: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The num_return best continuations of each prompt: (tokens int32 (B, num_return,
    max_new_tokens), scores float32 (B, num_return)), best first; scoring as in the module
    docstring. prompts, lengths and pad_to as for decode.generate. A prompt with fewer than num_return
    possible hypotheses (a tiny vocabulary) fills the rest with score -inf. no_repeat_ngram n > 0:
    no hypothesis repeats an n-gram of its new tokens (Hugging Face's no_repeat_ngram_size)."""
    if beam_size < 1 or not 1 <= num_return <= beam_size:
        raise ValueError(f"beam_size {beam_size}, num_return {num_return}: need beam_size >= 1 and "
                         "1 <= num_return <= beam_size")
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens {max_new_tokens}: beam search needs at least one new token")
    tokens_BxP, lengths_B = left_pad(prompts, lengths, pad_to=pad_to)
    mask_BxP = prompt_mask(tokens_BxP, lengths_B)
    tokens, scores = _beam_jit(model, nn.unbox(params), np.repeat(tokens_BxP, beam_size, axis=0),
                               np.repeat(mask_BxP, beam_size, axis=0), beam_size=beam_size,
                               max_new_tokens=max_new_tokens, eos_id=int(eos_id), alpha=float(alpha),
                               num_return=num_return, no_repeat_ngram=int(no_repeat_ngram),
                               length_reward=float(length_reward))
    return np.asarray(tokens), np.asarray(scores)


@functools.partial(jax.jit, static_argnames=("model", "beam_size", "max_new_tokens", "eos_id", "alpha",
                                             "num_return", "no_repeat_ngram", "length_reward"))
def _beam_jit(model, params, tokens_BKxP, mask_BKxP, *, beam_size, max_new_tokens, eos_id, alpha,
              num_return, no_repeat_ngram, length_reward):
    K, N = beam_size, max_new_tokens
    BK, P = tokens_BKxP.shape
    B = BK // K
    axes = cache_batch_axes(model, P, N)
    cache = init_cache(model, (BK, P), N)
    logits_BKxV, cache = prefill(model, params, cache, tokens_BKxP, mask_BKxP, N)
    step = functools.partial(_step, axes=axes, eos_id=eos_id, alpha=alpha, no_repeat_ngram=no_repeat_ngram,
                             length_reward=length_reward)
    no_seq_BxKxN = jnp.full((B, K, N), eos_id, jnp.int32)
    only_first_BxK = jnp.where(jnp.arange(K) == 0, 0.0, -jnp.inf)[None].repeat(B, 0)  # no duplicates
    beams = step(_Beams(jnp.int32(0), no_seq_BxKxN, only_first_BxK, no_seq_BxKxN,
                        jnp.full((B, K), -jnp.inf), cache), logits_BKxV)

    def cond(beams):
        return (beams.i < N) & ~_settled(beams, N, alpha, length_reward)

    def body(beams):
        last_BK = lax.dynamic_index_in_dim(beams.alive_seq_BxKxN, beams.i - 1, axis=2,
                                           keepdims=False).reshape(-1)
        logits_BKxV, cache = extend(model, params, beams.cache, last_BK)
        return step(beams._replace(cache=cache), logits_BKxV)

    beams = lax.while_loop(cond, body, beams)
    # Alive beams that ran to max_new_tokens compete as hypotheses of that length.
    truncated_BxK = jnp.where(beams.i == N, hypothesis_score(beams.alive_logp_BxK, N, alpha, length_reward),
                              -jnp.inf)
    score_Bx2K = jnp.concatenate([beams.finished_score_BxK, truncated_BxK], axis=1)
    seq_Bx2KxN = jnp.concatenate([beams.finished_seq_BxKxN, beams.alive_seq_BxKxN], axis=1)
    best_BxR, pick_BxR = lax.top_k(score_Bx2K, num_return)  # ties: finished first
    return jnp.take_along_axis(seq_Bx2KxN, pick_BxR[:, :, None], axis=1), best_BxR


def repeated_ngram_mask(seq_BxKxN: jnp.ndarray, i: jnp.ndarray, n: int, vocab: int) -> jnp.ndarray:
    """bool (B, K, V): the tokens that would complete, at position i, an n-gram already among
    each beam's first i tokens (Hugging Face's no_repeat_ngram_size)."""
    B, K, N = seq_BxKxN.shape
    J = N - n + 1  # n-gram start positions
    if J < 1 or n < 1:
        return jnp.zeros((B, K, vocab), bool)
    last_BxKx1 = [lax.dynamic_index_in_dim(seq_BxKxN, i - n + 1 + m, axis=2) for m in range(n - 1)]
    match_BxKxJ = jnp.ones((B, K, J), bool)
    for m in range(n - 1):
        match_BxKxJ &= seq_BxKxN[:, :, m:m + J] == last_BxKx1[m]
    match_BxKxJ &= (jnp.arange(J) + n - 1 < i) & (i >= n - 1)
    nxt_BxKxJ = seq_BxKxN[:, :, n - 1:n - 1 + J]
    b, k = jnp.arange(B)[:, None, None], jnp.arange(K)[None, :, None]
    return jnp.zeros((B, K, vocab), bool).at[b, k, nxt_BxKxJ].max(match_BxKxJ)


def _step(beams: _Beams, logits_BKxV: jnp.ndarray, *, axes, eos_id: int, alpha: float,
          no_repeat_ngram: int = 0, length_reward: float = 0.0) -> _Beams:
    """Choose new token i: every alive beam times every token, the top 2K kept (at most K end in
    EOS, so K alive survive); EOS candidates in the top K join the finished set."""
    B, K, N = beams.alive_seq_BxKxN.shape
    V = logits_BKxV.shape[-1]
    logp_BxKxV = jax.nn.log_softmax(logits_BKxV.astype(jnp.float32)).reshape(B, K, V)
    logp_BxKxV = logp_BxKxV + beams.alive_logp_BxK[:, :, None]
    if no_repeat_ngram:
        logp_BxKxV = jnp.where(repeated_ngram_mask(beams.alive_seq_BxKxN, beams.i, no_repeat_ngram, V),
                               -jnp.inf, logp_BxKxV)
    top_logp_Bx2K, top_Bx2K = lax.top_k(logp_BxKxV.reshape(B, K * V), min(2 * K, K * V))
    parent_Bx2K, token_Bx2K = top_Bx2K // V, (top_Bx2K % V).astype(jnp.int32)
    seq_Bx2KxN = jnp.take_along_axis(beams.alive_seq_BxKxN, parent_Bx2K[:, :, None], axis=1)
    seq_Bx2KxN = lax.dynamic_update_slice(seq_Bx2KxN, token_Bx2K[:, :, None], (0, 0, beams.i))
    is_eos_Bx2K = token_Bx2K == eos_id

    in_beam_2K = jnp.arange(top_Bx2K.shape[1]) < K
    new_score_Bx2K = jnp.where(is_eos_Bx2K & in_beam_2K,
                               hypothesis_score(top_logp_Bx2K, beams.i + 1, alpha, length_reward), -jnp.inf)
    finished_score_BxK, keep_BxK = lax.top_k(
        jnp.concatenate([beams.finished_score_BxK, new_score_Bx2K], axis=1), K)  # ties: older first
    finished_seq_BxKxN = jnp.take_along_axis(
        jnp.concatenate([beams.finished_seq_BxKxN, seq_Bx2KxN], axis=1), keep_BxK[:, :, None], axis=1)

    alive_logp_BxK, pick_BxK = lax.top_k(jnp.where(is_eos_Bx2K, -jnp.inf, top_logp_Bx2K), K)
    alive_seq_BxKxN = jnp.take_along_axis(seq_Bx2KxN, pick_BxK[:, :, None], axis=1)
    parent_BxK = jnp.take_along_axis(parent_Bx2K, pick_BxK, axis=1)
    rows_BK = (jnp.arange(B)[:, None] * K + parent_BxK).reshape(-1)
    return _Beams(beams.i + 1, alive_seq_BxKxN, alive_logp_BxK, finished_seq_BxKxN, finished_score_BxK,
                  reorder_cache(beams.cache, axes, rows_BK))


def _settled(beams: _Beams, max_new_tokens: int, alpha: float, length_reward: float = 0.0) -> jnp.ndarray:
    """True when, for every prompt, all K finished slots are filled and the worst of them beats
    the best final score any alive beam can still reach (T5X's termination test; a length reward
    adds its most, at max_new_tokens)."""
    largest_penalty = jnp.maximum(length_penalty(beams.i + 1, alpha), length_penalty(max_new_tokens, alpha))
    reachable_B = (jnp.max(beams.alive_logp_BxK, axis=1) / largest_penalty
                   + max(length_reward, 0.0) * max_new_tokens)
    return jnp.all(jnp.min(beams.finished_score_BxK, axis=1) > reachable_B)
