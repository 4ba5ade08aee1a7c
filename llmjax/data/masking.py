"""BERT's masked-LM corruption, done on the host as a pure function of (seed, stream, step, row).

Row r of the global batch draws from np.random.default_rng([seed, stream, step, r]), so a step
sees the same masks on any number of hosts (each passes row_offset = its first global row) and
a resumed run is exact. Training uses stream=0 with the training step; evaluation uses
stream=1 with the eval batch index as `step`, so eval masks never repeat training ones and are
the same at every evaluation (losses comparable across evaluations).

Shape key: B batch rows, L seq_len, P max_predictions, V vocab_size, R replacement ids.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from llmjax.data.tokenizers import Tokenizer

TRAIN_STREAM, EVAL_STREAM = 0, 1


@dataclasses.dataclass(frozen=True, eq=False)
class MaskingTables:
    """What masking needs to know about each id, derived once from the tokenizer."""
    special_V: np.ndarray  # bool: never masked, predicted, or used as a random replacement
    starts_space_V: np.ndarray  # bool: the piece starts with whitespace (a word starts here)
    ends_space_V: np.ndarray  # bool: the piece ends with whitespace (a word starts after it)
    mask_id: int
    replacements_R: np.ndarray  # int32: every id whose special_V is False

    @classmethod
    def from_tokenizer(cls, tokenizer: Tokenizer) -> MaskingTables:
        pieces = tokenizer.pieces()
        special = tokenizer.special_mask()
        return cls(special_V=special,
                   starts_space_V=np.array([p[:1].isspace() for p in pieces]),
                   ends_space_V=np.array([p[-1:].isspace() for p in pieces]),
                   mask_id=tokenizer.mask_id,
                   replacements_R=np.flatnonzero(~special).astype(np.int32))

    def word_starts(self, tokens_BxL: np.ndarray, candidates_BxL: np.ndarray) -> np.ndarray:
        """bool (B, L): the token starts a word (whitespace before it or at its start, or it or
        the token before is not a candidate: special, padding or outside the vocabulary)."""
        t = np.clip(tokens_BxL, 0, len(self.special_V) - 1)
        starts = self.starts_space_V[t] | ~candidates_BxL
        starts[:, 1:] |= self.ends_space_V[t[:, :-1]] | ~candidates_BxL[:, :-1]
        starts[:, 0] = True
        return starts


def num_to_predict(num_candidates_B: np.ndarray, rate: float, max_predictions: int) -> np.ndarray:
    """BERT's count: min(max_predictions, max(1, round(rate * n))), and never more than n."""
    k = np.maximum(1, np.rint(rate * num_candidates_B).astype(np.int64))
    return np.minimum(np.minimum(k, max_predictions), num_candidates_B)


def mask_tokens(tokens_BxL: np.ndarray, attention_mask_BxL: np.ndarray, *,
                tokenizer_tables: MaskingTables, seed: int, step: int, row_offset: int,
                rate: float = 0.15, whole_word: bool = False, max_predictions: int,
                stream: int = TRAIN_STREAM) -> dict[str, np.ndarray]:
    """inputs int32 (B, L) and mlm_positions, mlm_ids int32 / mlm_weights float32 (B, P).

    Candidates are real (attention_mask 1), non-special tokens; each row selects exactly
    num_to_predict of them at random (whole_word: whole words in random order, skipping a word
    that would overshoot, as BERT does, so possibly fewer). Each selected token becomes [MASK]
    with p=0.8, a uniformly random non-special id with p=0.1, or stays with p=0.1. Positions
    are listed in increasing order; unused slots have position 0, id 0 and weight 0.
    """
    tokens_BxL = np.asarray(tokens_BxL)
    if tokens_BxL.ndim != 2 or np.shape(attention_mask_BxL) != tokens_BxL.shape:
        raise ValueError(f"tokens {tokens_BxL.shape} and attention_mask "
                         f"{np.shape(attention_mask_BxL)} must be the same (B, L) shape")
    if max_predictions < 1 or not 0.0 < rate <= 1.0:
        raise ValueError(f"max_predictions={max_predictions} must be >= 1 and rate={rate} in "
                         "(0, 1]: fix the MLM config")
    if min(seed, step, row_offset, stream) < 0:
        raise ValueError(f"seed={seed}, step={step}, row_offset={row_offset} and "
                         f"stream={stream} must be >= 0 (use stream=EVAL_STREAM for eval, not "
                         "a negative step)")
    tab = tokenizer_tables
    B, L = tokens_BxL.shape
    P = max_predictions
    tokens_BxL = tokens_BxL.astype(np.int32)
    in_vocab_BxL = (tokens_BxL >= 0) & (tokens_BxL < len(tab.special_V))
    cand_BxL = ((np.asarray(attention_mask_BxL) != 0) & in_vocab_BxL
                & ~tab.special_V[np.where(in_vocab_BxL, tokens_BxL, 0)])
    k_B = num_to_predict(cand_BxL.sum(1), rate, P)
    u_Bx3xL = np.stack([np.random.default_rng([seed, stream, step, row_offset + r]).random((3, L))
                        for r in range(B)]) if B else np.zeros((0, 3, L))
    key_BxL = np.where(cand_BxL, u_Bx3xL[:, 0], 2.0)  # candidates in random order
    if whole_word:
        sel_BxL = _select_words(key_BxL, tab.word_starts(tokens_BxL, cand_BxL), cand_BxL, k_B)
    else:
        kth_B = np.take_along_axis(np.sort(key_BxL, axis=1), np.maximum(k_B - 1, 0)[:, None],
                                   axis=1)[:, 0]
        sel_BxL = cand_BxL & (key_BxL <= kth_B[:, None]) & (k_B > 0)[:, None]

    action_BxL = u_Bx3xL[:, 1]
    inputs_BxL = tokens_BxL.copy()
    inputs_BxL[sel_BxL & (action_BxL < 0.8)] = tab.mask_id
    randomize_BxL = sel_BxL & (action_BxL >= 0.8) & (action_BxL < 0.9)
    pick_BxL = (u_Bx3xL[:, 2] * len(tab.replacements_R)).astype(np.int64)
    inputs_BxL[randomize_BxL] = tab.replacements_R[pick_BxL[randomize_BxL]]

    order_BxL = np.argsort(~sel_BxL, axis=1, kind="stable")  # selected positions first, in order
    positions_BxP = np.zeros((B, P), np.int32)
    positions_BxP[:, :min(L, P)] = order_BxL[:, :P]
    weights_BxP = np.arange(P)[None, :] < sel_BxL.sum(1)[:, None]
    positions_BxP = np.where(weights_BxP, positions_BxP, 0).astype(np.int32)
    ids_BxP = np.where(weights_BxP, np.take_along_axis(tokens_BxL, positions_BxP, axis=1), 0)
    return {"inputs": inputs_BxL, "mlm_positions": positions_BxP,
            "mlm_ids": ids_BxP.astype(np.int32), "mlm_weights": weights_BxP.astype(np.float32)}


def _select_words(key_BxL: np.ndarray, starts_BxL: np.ndarray, cand_BxL: np.ndarray,
                  k_B: np.ndarray) -> np.ndarray:
    """Whole words taken in random order (a word's key is its first token's) while they fit."""
    B, L = key_BxL.shape
    t_L = np.arange(L)
    next_start_BxL = np.minimum.accumulate(np.where(starts_BxL, t_L, L)[:, ::-1], axis=1)[:, ::-1]
    next_start_BxL = np.concatenate([next_start_BxL[:, 1:], np.full((B, 1), L)], axis=1)
    word_len_BxL = np.where(starts_BxL & cand_BxL, next_start_BxL - t_L, 0)  # at word starts
    word_key_BxL = np.where(word_len_BxL > 0, key_BxL, np.inf)
    order_BxW = np.argsort(word_key_BxL, axis=1, kind="stable")
    len_BxW = np.take_along_axis(word_len_BxL, order_BxW, axis=1)
    rest_min_BxW = np.minimum.accumulate(np.where(len_BxW > 0, len_BxW, L + 1)[:, ::-1],
                                         axis=1)[:, ::-1]  # shortest word still to come
    rows_B = np.arange(B)
    taken_BxL = np.zeros((B, L), bool)
    total_B = np.zeros(B, np.int64)
    for j in range(L):
        if not (rest_min_BxW[:, j] <= k_B - total_B).any():
            break
        fits_B = (len_BxW[:, j] > 0) & (total_B + len_BxW[:, j] <= k_B)
        taken_BxL[rows_B[fits_B], order_BxW[fits_B, j]] = True
        total_B += np.where(fits_B, len_BxW[:, j], 0)
    word_start_BxL = np.maximum.accumulate(np.where(starts_BxL, t_L, 0), axis=1)
    return np.take_along_axis(taken_BxL, word_start_BxL, axis=1) & cand_BxL
