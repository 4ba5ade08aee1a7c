"""Per-word features for token labelling: each word of a sentence becomes a list of feature
strings ("w=self", "s2=lf", "w[-1]=def"), which the bow/tfidf vectorizers read as a document.

A word's own features: the word, its lowercase, its prefixes and suffixes of 1..affix
characters, its shape (upper X, lower x, digit d, other characters as they are, repeats
collapsed: "getValue_2" -> "xXx_d"), and the text just before and after it (the first
characters of the gap to the neighbouring word, spaces dropped and a line break kept, or the
text's edge): in code the "(" after a
name or the "." before it says what the name is, and a dataset's words need not include them.
Its neighbours: the word and lowercase word at each offset -window..+window (and BOS/EOS past
the sentence's ends).

Shape key: N words of a sentence.
"""
from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

GAP_CHARS = 3  # characters of the gap before/after a word that are a feature
_SHAPE = [(re.compile(r"[A-Z]+"), "X"), (re.compile(r"[a-z]+"), "x"), (re.compile(r"[0-9]+"), "d")]


def shape(word: str) -> str:
    """The word's shape: runs of upper, lower and digit characters as X, x, d."""
    for pattern, mark in _SHAPE:
        word = pattern.sub(mark, word)
    return re.sub(r"(.)\1+", r"\1", word)


def _squeeze(gap: str) -> str:
    """A gap without its spaces, a line break kept as one "\\n" (a word that starts a line)."""
    return re.sub(r"\s*\n\s*", "\n", gap).strip(" \t\r\f\v")


def _gaps(text: str, spans_Nx2: np.ndarray) -> tuple[list[str], list[str]]:
    """The text before and after each word up to the neighbouring word, squeezed, cut to the
    GAP_CHARS characters next to the word ("^"/"$" at the text's edges)."""
    starts = [int(s) for s in spans_Nx2[:, 0]]
    ends = [int(e) for e in spans_Nx2[:, 1]]
    before, after = [], []
    for i, (s, e) in enumerate(zip(starts, ends)):
        left = _squeeze(text[ends[i - 1] if i else 0:s])
        right = _squeeze(text[e:starts[i + 1] if i + 1 < len(starts) else len(text)])
        before.append(left[-GAP_CHARS:] if left or i else "^")
        after.append(right[:GAP_CHARS] if right or i + 1 < len(starts) else "$")
    return before, after


def sentence_features(text: str, spans_Nx2: np.ndarray, window: int, affix: int) -> list[list[str]]:
    """The feature strings of each of the N words text[s:e] of spans_Nx2."""
    spans_Nx2 = np.asarray(spans_Nx2).reshape(-1, 2)
    words = [text[int(s):int(e)] for s, e in spans_Nx2]
    lower = [w.lower() for w in words]
    before, after = _gaps(text, spans_Nx2)
    n = len(words)
    out = []
    for i, word in enumerate(words):
        f = [f"w={word}", f"lower={lower[i]}", f"shape={shape(word)}",
             f"gap[-]={before[i]}", f"gap[+]={after[i]}"]
        f += [f"p{k}={word[:k]}" for k in range(1, min(affix, len(word)) + 1)]
        f += [f"s{k}={word[-k:]}" for k in range(1, min(affix, len(word)) + 1)]
        for d in range(-window, window + 1):
            if d == 0:
                continue
            j = i + d
            if 0 <= j < n:
                f += [f"w[{d:+d}]={words[j]}", f"lower[{d:+d}]={lower[j]}"]
            else:
                f.append(f"w[{d:+d}]={'BOS' if j < 0 else 'EOS'}")
        out.append(f)
    return out


def featurise(sentences: Sequence[tuple[str, np.ndarray]], window: int, affix: int
              ) -> list[list[str]]:
    """Every word's feature list, sentence after sentence (one row per word)."""
    return [f for text, spans in sentences for f in sentence_features(text, spans, window, affix)]
