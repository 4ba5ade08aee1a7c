"""A word-level tokenizer (data.tokenizer="word"): one id per word, for word-level models such as
Word2Vec over words (Mikolov et al. 2013 and gensim count and embed words, not sub-word pieces).

A word is a run of `\\w` characters (letters, digits, underscore: identifiers, numbers and the
words of prose and comments); everything else (punctuation, operators, whitespace) separates
words and is dropped, so decoding is lossy (words joined by spaces). The vocabulary is the
data.vocab_size - 6 most frequent words of the tokenizer's training sample (data.spm_train_chars
characters of train documents: raise it to count the whole corpus), ties by the word; other words
encode as [UNK]. A minimum count is the task's business (Word2Vec's task.min_count drops the
words seen fewer times in the whole train split, as gensim's min_count does).

Ids: the words most frequent first, then EOS, [UNK], [PAD], [CLS], [SEP], [MASK].
"""
from __future__ import annotations

import collections
import re
from collections.abc import Sequence

import numpy as np

from llmjax.data.tokenizers import Tokenizer

WORD = re.compile(r"\w+")
NUM_SPECIAL = 6  # EOS and the five specials


def words(text: str) -> list[str]:
    """The words of text, in order (what the tokenizer and a word-level baseline both read)."""
    return WORD.findall(text)


class WordTokenizer(Tokenizer):
    kind = "word"

    def __init__(self, vocabulary: Sequence[str]):
        self.words = list(vocabulary)
        self._ids = {w: i for i, w in enumerate(self.words)}

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int) -> WordTokenizer:
        """The vocab_size - 6 most frequent words of texts (ties by the word)."""
        counts = collections.Counter()
        for text in texts:
            counts.update(words(text))
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return cls([w for w, _ in ranked[:max(vocab_size - NUM_SPECIAL, 0)]])

    @property
    def name(self) -> str:
        return f"word ({len(self.words)} words)"

    @property
    def vocab_size(self) -> int:
        return len(self.words) + NUM_SPECIAL

    @property
    def eos_id(self) -> int:
        return len(self.words)

    @property
    def special_ids(self) -> dict[str, int]:
        n = len(self.words)
        return {"pad": n + 2, "unk": n + 1, "cls": n + 3, "sep": n + 4, "mask": n + 5}

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        unk, ids = self.unk_id, self._ids
        return [np.array([ids.get(w, unk) for w in words(t)], np.int32) for t in texts]

    def encode_with_offsets(self, texts: Sequence[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each word's own character span (the text between words has no token)."""
        out = []
        for ids, text in zip(self.encode_batch(texts), texts):
            spans = [m.span() for m in WORD.finditer(text)]
            out.append((ids, np.array(spans, np.int32).reshape(-1, 2)))
        return out

    def decode(self, ids) -> str:
        n = len(self.words)
        return " ".join(self.words[i] if i < n else "\ufffd" for i in self._valid(ids)
                        if i < n or i == self.unk_id)

    def byte_lengths(self) -> np.ndarray:
        # [UNK] counts 1: it replaced a word of at least one byte.
        return np.array([len(w.encode("utf-8", "surrogatepass")) for w in self.words]
                        + [0, 1, 0, 0, 0, 0], np.int32)

    def pieces(self) -> list[str]:
        return list(self.words) + [""] * NUM_SPECIAL

    def _spec(self) -> dict:
        return {"kind": "word", "words": self.words}
