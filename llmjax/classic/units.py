"""What a token of a classic feature is: a word (a regular expression over the text) or one of
the run's tokenizer pieces. Both give each text a list of token strings, so the vectorizers,
the n-grams and the averaged embeddings read one form. A text pair is one list: the first
text's tokens, PAIR_SEP, the second's (an n-gram that crosses it says so).
"""
from __future__ import annotations

import re
from collections.abc import Sequence

from llmjax.data.tokenizers import Tokenizer

PAIR_SEP = "[SEP]"


def words(texts: Sequence[str], pattern: str, lowercase: bool = False) -> list[list[str]]:
    """Each text's words: the pattern's matches, in order (lowercased first if asked)."""
    find = re.compile(pattern).findall
    return [find(t.lower() if lowercase else t) for t in texts]


def pieces(tok: Tokenizer, texts: Sequence[str]) -> list[list[str]]:
    """Each text's tokenizer pieces, as their ids written out ("17"): pieces of some tokenizers
    share a text (the bytes of a multi-byte character), ids never do."""
    return [[str(i) for i in ids.tolist()] for ids in tok.encode_batch(list(texts))]


def joined(first: list[list[str]], second: list[list[str]] | None) -> list[list[str]]:
    """Pairs as one token list each (PAIR_SEP between); single texts as they are."""
    if second is None:
        return first
    return [[*a, PAIR_SEP, *b] for a, b in zip(first, second)]
