"""Shared by the BERT data tests: a few stdlib sources and a small sentencepiece trained on them."""
import functools
import os
import sysconfig

from llmjax.data.tokenizers import ByteTokenizer, SentencePieceTokenizer


@functools.cache
def stdlib_texts(num_files: int = 40, max_chars: int = 30_000) -> tuple[str, ...]:
    """Real code and prose (docstrings) with no download: the first top-level stdlib modules."""
    root = sysconfig.get_paths()["stdlib"]
    names = sorted(n for n in os.listdir(root) if n.endswith(".py"))[:num_files]
    texts = []
    for n in names:
        with open(os.path.join(root, n), encoding="utf-8", errors="replace") as f:
            texts.append(f.read()[:max_chars])
    return tuple(texts)


@functools.cache
def small_spm() -> SentencePieceTokenizer:
    return SentencePieceTokenizer.train(stdlib_texts()[:20], 400, "bpe", 150_000)


def tokenizers() -> dict:
    return {"byte": ByteTokenizer(), "sentencepiece": small_spm()}
