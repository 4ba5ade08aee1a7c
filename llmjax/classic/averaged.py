"""The averaged-embedding representation: a text's vector is the mean of its tokens' Word2Vec
vectors (tokens the file lacks are skipped; a text with none is the zero vector), then
standardised with the train texts' mean and spread so the regression's L2 penalty weighs every
dimension alike.

The file must fit the run's tokens: vectors trained on words (no tokenizer fingerprint) are
looked up by the word, so features.units must be words; vectors trained on a tokenizer's
pieces follow its ids, so features.units must be pieces with that very tokenizer (the Word2Vec
run's, through features.tokenizer_from).

Shape key: N texts, V tokens of the file, D dimensions.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from llmjax.config import UserError
from llmjax.data.embeddings_file import read_header
from llmjax.data.tokenizers import Tokenizer


def checked_header(path: str, units: str, tokenizer_from: str = "", words_only: bool = False) -> dict:
    """The file's header (llmjax.data.embeddings_file), checked against the run's units before
    any data is read; words_only: the run's tokens are a dataset's words (the tag task), which
    piece vectors can never be."""
    header = read_header(path)
    fingerprint = header["tokenizer_fingerprint"]
    if words_only and fingerprint is not None:
        raise UserError(f"config.features.embeddings={path!r} holds the vectors of a tokenizer's "
                        f"pieces (fingerprint {fingerprint}) but the tag task looks up the dataset's "
                        "words: use the embeddings of a Word2Vec run over words "
                        "(data.tokenizer='word', as configs/word2vec_stdlib.py)")
    check_fit(path, header["count"], fingerprint, units, None, tokenizer_from)
    return header


def check_fit(path: str, count: int, fingerprint: str | None, units: str,
              tok: Tokenizer | None, tokenizer_from: str = "") -> None:
    """UserError when the file's vectors cannot be the run's tokens: from its header alone
    (tok None: before any data), then against the run's tokenizer."""
    if fingerprint is None and units != "words":
        raise UserError(f"config.features.embeddings={path!r} holds word vectors (no tokenizer "
                        "fingerprint) but config.features.units='pieces': set units='words'")
    if fingerprint is not None and units != "pieces":
        raise UserError(f"config.features.embeddings={path!r} holds the vectors of a tokenizer's "
                        f"pieces (fingerprint {fingerprint}) but config.features.units={units!r}: "
                        "set units='pieces' and features.tokenizer_from to the Word2Vec run's workdir")
    if fingerprint is not None and tok is None and not tokenizer_from:
        raise UserError(f"config.features.embeddings={path!r} holds the vectors of a tokenizer's "
                        "pieces but config.features.tokenizer_from is empty (a tokenizer trained "
                        "now would number its pieces otherwise): set it to the Word2Vec run's workdir")
    if tok is None or fingerprint is None:
        return
    if tok.fingerprint() != fingerprint:
        raise UserError(f"config.features.embeddings={path!r} was trained on the pieces of tokenizer "
                        f"{fingerprint} but this run's is {tok.name} ({tok.fingerprint()}): set "
                        "config.features.tokenizer_from to the Word2Vec run's workdir")
    if count > tok.vocab_size:
        raise UserError(f"config.features.embeddings={path!r} has {count} rows but the tokenizer "
                        f"has {tok.vocab_size} ids: the file is damaged; save it again")


def check_found(path: str, found: float, tokens: str, count: int, split: str) -> None:
    """UserError when none of the train tokens has a vector (every feature would be zero):
    tokens names them ("texts' words"), split says how the run splits its words."""
    if not found:
        raise UserError(f"config.features.embeddings={path!r}: none of the train {tokens} is among "
                        f"its {count} tokens: use vectors trained on this corpus, with the words "
                        f"split as {split}")


def token_rows(tokens: Sequence[str], units: str) -> dict[str, int]:
    """The file's row of each token string as llmjax.classic.units writes them: words by the
    word, pieces by their id ("17")."""
    if units == "pieces":
        return {str(i): i for i in range(len(tokens))}
    return {t: i for i, t in enumerate(tokens)}


def mean_vectors(texts: Sequence[Sequence[str]], rows: dict[str, int], vectors_VxD: np.ndarray
                 ) -> tuple[np.ndarray, float]:
    """((N, D) float32 mean vectors, the share of the texts' tokens the file has)."""
    out_NxD = np.zeros((len(texts), vectors_VxD.shape[1]), np.float32)
    found = total = 0
    for i, tokens in enumerate(texts):
        ids = [rows[t] for t in tokens if t in rows]
        found, total = found + len(ids), total + len(tokens)
        if ids:
            out_NxD[i] = vectors_VxD[ids].mean(axis=0)
    return out_NxD, found / max(total, 1)


def standardise(train_NxD: np.ndarray, *others_NxD: np.ndarray) -> list[np.ndarray]:
    """Each array shifted and scaled by train's per-dimension mean and standard deviation (a
    constant dimension is left unscaled)."""
    mean_D = train_NxD.mean(axis=0)
    std_D = train_NxD.std(axis=0)
    std_D = np.where(std_D > 0, std_D, 1.0)
    return [(x - mean_D) / std_D for x in (train_NxD, *others_NxD)]
