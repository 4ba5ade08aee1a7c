"""Trained token vectors on disk: what a Word2Vec run leaves behind, and what the averaged-
embedding baseline and `model.embed_init` read.

Format: two files side by side, named from one path (`X.npy`, or `X`, which means `X.npy`):
  X.npy    float32 (V, D): row i is the vector of token i, a plain NumPy array (np.load reads it)
  X.json   {"format": 1, "count": V, "dim": D, "tokens": [V strings], "tokenizer_fingerprint":
           the fingerprint of the tokenizer whose ids the rows follow, or null}
A fingerprint means row i is that tokenizer's id i (all of its real vocabulary, in order), so the
rows can initialise a model's token table over the same tokenizer. null means the vectors were
trained on words (llmjax.data.word_tokenizer with task.min_count, or any other word list): the
tokens name the rows and only a reader that looks words up by string can use them. The JSON is
written last, so a reader never sees vectors without their tokens.
"""
from __future__ import annotations

import json
import os

import numpy as np

from llmjax.config import ConfigError, UserError
from llmjax.data.atomic import atomic_write

FORMAT = 1


def paths(path: str) -> tuple[str, str]:
    """(vectors .npy, tokens .json) of an embeddings path given with or without .npy."""
    stem = path[:-4] if path.endswith(".npy") else path
    return stem + ".npy", stem + ".json"


def save_embeddings(path: str, vectors_VxD: np.ndarray, tokens: list[str],
                    tokenizer_fingerprint: str | None) -> None:
    """Write the vectors and their tokens (see the module docstring); a one-line UserError when
    the rows and the tokens disagree."""
    vectors_VxD = np.asarray(vectors_VxD, np.float32)
    if vectors_VxD.ndim != 2 or vectors_VxD.shape[0] != len(tokens):
        raise UserError(f"embeddings for {path}: {vectors_VxD.shape} vectors for {len(tokens)} tokens: "
                        "pass one row per token")
    npy, meta = paths(path)
    os.makedirs(os.path.dirname(os.path.abspath(npy)), exist_ok=True)
    atomic_write(npy, lambda f: np.save(f, vectors_VxD))
    header = {"format": FORMAT, "count": int(vectors_VxD.shape[0]), "dim": int(vectors_VxD.shape[1]),
              "tokenizer_fingerprint": tokenizer_fingerprint, "tokens": list(tokens)}
    atomic_write(meta, lambda f: f.write(json.dumps(header, ensure_ascii=False).encode()))


def read_header(path: str) -> dict:
    """The JSON side of an embeddings file (count, dim, tokens, fingerprint), checked against the
    .npy's shape without reading its rows: cheap enough for a config check."""
    npy, meta = paths(path)
    fix = "point at the X.npy a Word2Vec run saved (workdir/embeddings.npy) beside its X.json"
    try:
        with open(meta, encoding="utf-8") as f:
            header = json.load(f)
        shape = np.load(npy, mmap_mode="r").shape
    except FileNotFoundError as e:
        raise UserError(f"embeddings file {path}: {e.filename} is missing: {fix}") from None
    except (OSError, ValueError) as e:
        raise UserError(f"embeddings file {path} is unreadable ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}): {fix}") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise UserError(f"embeddings file {meta} is not format {FORMAT} of llmjax.data.embeddings_file: {fix}")
    if shape != (header.get("count"), header.get("dim")) or len(header.get("tokens", ())) != shape[0]:
        raise UserError(f"embeddings file {path}: the vectors are {shape} but {meta} records "
                        f"{header.get('count')} tokens of dimension {header.get('dim')}: the two files "
                        "are from different runs; save them again")
    return header


def check_token_vectors(path: str, key: str, dim: int, fingerprint: str | None = None,
                        num_ids: int = 0) -> None:
    """One-line ConfigError (naming the config key) unless the file holds vectors of a
    tokenizer's ids (not words), of width dim, and, where given, of the tokenizer with this
    fingerprint and its num_ids rows. From the header alone: cheap enough for resolve."""
    header = read_header(path)
    got = header["tokenizer_fingerprint"]
    if got is None:
        raise ConfigError(f"{key}={path!r} holds vectors of words, not of a tokenizer's ids: train "
                          "Word2Vec with this run's data.tokenizer (over its pieces) to initialise a token table")
    if header["dim"] != dim:
        raise ConfigError(f"{key}={path!r} holds vectors of dimension {header['dim']} but the model's "
                          f"token table is {dim} wide: train Word2Vec with model.dim={dim}, or set "
                          f"config.model.d_model={header['dim']}")
    if fingerprint is not None and got != fingerprint:
        raise ConfigError(f"{key}={path!r} was trained over another tokenizer (fingerprint {got}) than "
                          f"this run's ({fingerprint}): train Word2Vec with this run's data config, or unset the key")
    if num_ids and header["count"] != num_ids:
        raise ConfigError(f"{key}={path!r} holds {header['count']} rows but the tokenizer has {num_ids} "
                          "ids: save the embeddings again from the Word2Vec run")


def load_embeddings(path: str) -> tuple[np.ndarray, list[str], str | None]:
    """(vectors float32 (V, D), tokens, tokenizer fingerprint or None for words)."""
    header = read_header(path)
    vectors_VxD = np.load(paths(path)[0]).astype(np.float32, copy=False)
    return vectors_VxD, list(header["tokens"]), header["tokenizer_fingerprint"]
