"""Extractive-QA rows: answers as token spans, long contexts in overlapping windows (Hugging
Face run_qa's), and a decoded token span back to characters.

A row is the question and one window of the context in the family's layout (classify's
encode_rows): BERT `[CLS] q [SEP] window [SEP]` (the window's token type 1), GPT `q [SEP] window
EOS`. A window holds `room` context tokens (seq_len less the question and the specials); each
next window starts room - doc_stride tokens later (doc_stride tokens overlap), and the last one
reaches the context's end, so every context token is in some window and an answer of up to
doc_stride + 1 tokens is whole in at least one. A window that does not hold the whole answer
points start and end at position 0 ([CLS], or GPT's first question token), as Hugging Face's.

Shape key: N tokens of a context, W windows, B rows.
"""
from __future__ import annotations

import numpy as np

from llmjax.config import UserError


def answer_tokens(offsets_Nx2: np.ndarray, char_start: int, char_end: int) -> tuple[int, int]:
    """(first, last) token (inclusive) of the characters [char_start, char_end): the tokens whose
    spans touch them. (-1, -1) when no token does (an answer past the tokens' text)."""
    ends_N, starts_N = offsets_Nx2[:, 1], offsets_Nx2[:, 0]
    first = int(np.searchsorted(ends_N, char_start, side="right"))
    last = int(np.searchsorted(starts_N, char_end, side="left")) - 1
    if first >= len(offsets_Nx2) or last < first:
        return -1, -1
    return first, last


def token_chars(offsets_Nx2: np.ndarray, first: int, last: int) -> tuple[int, int]:
    """The characters [start, end) that tokens first..last (inclusive) stand for."""
    return int(offsets_Nx2[first, 0]), int(offsets_Nx2[last, 1])


def specials(bert_style: bool) -> tuple[int, int]:
    """(tokens a row adds besides the question and the window, the window's first position less
    the question's length): BERT [CLS] q [SEP] w [SEP] -> (3, 2), GPT q [SEP] w EOS -> (2, 1)."""
    return (3, 2) if bert_style else (2, 1)


def rooms(question_lengths_N: np.ndarray, seq_len: int, bert_style: bool) -> np.ndarray:
    """int64 context tokens a window holds beside each question."""
    return seq_len - np.asarray(question_lengths_N, np.int64) - specials(bert_style)[0]


def check_rooms(room_N: np.ndarray, doc_stride: int, seq_len: int, ids: list[str] | None = None,
                question_lengths_N: np.ndarray | None = None, split: str = "train") -> None:
    """One-line UserError naming the first question too long to leave more than doc_stride
    context tokens in a window (windows would not advance)."""
    bad = np.flatnonzero(room_N <= doc_stride)
    if not len(bad):
        return
    i = int(bad[0])
    name = repr(ids[i]) if ids is not None else f"{i} of {split}"
    q = f" of {int(question_lengths_N[i])} tokens" if question_lengths_N is not None else ""
    raise UserError(f"{split} example {name}: its question{q} leaves {int(room_N[i])} context tokens "
                    f"in a {seq_len}-token row, and windows need more than task.doc_stride="
                    f"{doc_stride} to advance ({len(bad)} such questions): raise data.seq_len, lower "
                    "task.doc_stride, or drop the long questions")


def window_starts(context_len: int, room: int, doc_stride: int) -> np.ndarray:
    """int64 first context token of each window: 0, room - doc_stride, ... until one reaches the
    end (one window for a context that fits, or an empty one)."""
    step = room - doc_stride
    count = 1 + -(-max(0, context_len - room) // step)
    return np.arange(count, dtype=np.int64) * step


def window_table(context_lengths_N: np.ndarray, room_N: np.ndarray, doc_stride: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(example_W, start_W) int64: every window of every example, in example order."""
    starts = [window_starts(int(c), int(r), doc_stride) for c, r in zip(context_lengths_N, room_N)]
    example_W = np.repeat(np.arange(len(starts), dtype=np.int64), [len(s) for s in starts])
    start_W = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    return example_W, start_W


def window_labels(answer_first: int, answer_last: int, start: int, length: int, first_position: int
                  ) -> tuple[int, int]:
    """(start, end) row positions of the answer in a window of length context tokens from start
    whose first token sits at first_position; (0, 0) when the window does not hold it whole."""
    if answer_first < 0 or not (start <= answer_first and answer_last < start + length):
        return 0, 0
    return first_position + answer_first - start, first_position + answer_last - start
