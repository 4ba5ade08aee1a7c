"""config.model.embed_init=PATH: a new run's token embedding table starts from trained vectors
(a Word2Vec run's workdir/embeddings.npy, llmjax.data.embeddings_file), after the parameters
are initialised (and warm-started) and before the first step. Blocks never read files: the
loop calls `apply` on the state it built.

The file must be over this run's tokenizer (the same fingerprint: row i is token i) and of the
model's width (d_model); anything else is one line before training: `check_file` (on resolve,
from the file's header alone) refuses another width and vectors trained on words, `apply`
refuses another tokenizer once the run's is known. The table is the unique `embedding` leaf of
shape (padded vocabulary, d_model); its first real_vocab_size rows are replaced, the padded rows
stay as initialised. The vectors are scaled as a whole (directions and relative lengths kept) to
the RMS of the rows they replace: Word2Vec vectors are ~100x larger than a Transformer's
init_std=0.02 table, and a tied output head would start with huge logits.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import jax
import numpy as np

from llmjax.config import ConfigError
from llmjax.data.embeddings_file import load_embeddings, read_header
from llmjax.data.tokenizers import has_tokenizer, load_tokenizer
from llmjax.training.tree_paths import flat_paths

Log = Callable[[str], None]
KEY = "config.model.embed_init"


def check_file(model_cfg: Any) -> None:
    """What the header alone can refuse (cheap: on resolve, before any data or compile)."""
    path = model_cfg.embed_init
    header = read_header(path)
    if header["tokenizer_fingerprint"] is None:
        raise ConfigError(f"{KEY}={path!r} holds vectors of words, not of a tokenizer's ids: train "
                          "Word2Vec with this run's data.tokenizer (word2vec over pieces) to initialise "
                          "a token table")
    if header["dim"] != model_cfg.d_model:
        raise ConfigError(f"{KEY}={path!r} holds vectors of dimension {header['dim']} but "
                          f"config.model.d_model={model_cfg.d_model}: train Word2Vec with "
                          f"model.dim={model_cfg.d_model}, or set d_model={header['dim']}")


def token_table_path(params: Any, vocab_size: int, d_model: int) -> str:
    """The path ("a/b/embedding") of the token table: the one `embedding` leaf of shape (V, d_model)."""
    found = [p for p, leaf in flat_paths(params).items()
             if p.split("/")[-1] == "embedding" and tuple(leaf.shape) == (vocab_size, d_model)]
    if len(found) != 1:
        raise ConfigError(f"{KEY}: this model has {len(found)} embedding tables of shape "
                          f"({vocab_size}, {d_model}) (expected one token table): unset {KEY}")
    return found[0]


def apply(params: Any, model_cfg: Any, workdir: str, log: Log) -> Any:
    """params with the token table's real rows from model_cfg.embed_init (see the module)."""
    path = model_cfg.embed_init
    check_file(model_cfg)
    vectors_VxD, _, fingerprint = load_embeddings(path)
    tok_dir = os.path.join(workdir, "tokenizer")
    run_fp = load_tokenizer(tok_dir).fingerprint() if has_tokenizer(tok_dir) else None
    if fingerprint != run_fp:
        raise ConfigError(f"{KEY}={path!r} was trained over another tokenizer (fingerprint "
                          f"{fingerprint}) than this run's ({run_fp}, {tok_dir}): train Word2Vec "
                          "with this run's data config (or its prepared_dir), or unset the key")
    V = model_cfg.real_vocab_size or model_cfg.vocab_size
    if vectors_VxD.shape[0] != V:
        raise ConfigError(f"{KEY}={path!r} holds {vectors_VxD.shape[0]} rows but the tokenizer has "
                          f"{V} ids: save the embeddings again from the Word2Vec run")
    where = token_table_path(params, model_cfg.vocab_size, model_cfg.d_model)
    table = flat_paths(params)[where]
    old_rms = float(np.sqrt(np.mean(np.square(np.asarray(jax.device_get(table[:V]), np.float64)))))
    new_rms = float(np.sqrt(np.mean(np.square(vectors_VxD, dtype=np.float64))))
    scale = old_rms / new_rms if new_rms > 0 else 1.0
    rows = (vectors_VxD * scale).astype(table.dtype)
    new = jax.jit(lambda t, r: t.at[:V].set(r), out_shardings=table.sharding)(table, rows)
    log(f"embed_init: {V} rows of {where} from {path} (scaled by {scale:.3g} to the initial RMS "
        f"{old_rms:.3g})")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves[list(flat_paths(params)).index(where)] = new  # flat_paths keeps the leaf order
    return jax.tree_util.tree_unflatten(treedef, leaves)
