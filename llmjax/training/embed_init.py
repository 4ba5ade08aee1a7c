"""config.model.embed_init=PATH: a new run's token embedding table starts from trained vectors
(a Word2Vec run's workdir/embeddings.npy, llmjax.data.embeddings_file), after the parameters
are initialised (and warm-started) and before the first step. Blocks never read files: the
loop asks the task for the rows (Task.token_vectors, which checks them against the run's
tokenizer) and `apply` puts them in the state it built.

The file must be over this run's tokenizer (the same fingerprint: row i is token i) and of the
model's width (d_model); anything else is one line before training (the width and vectors of
words already on resolve, from the file's header). The table is the unique `embedding` leaf of
shape (padded vocabulary, d_model); its first real_vocab_size rows are replaced, the padded rows
stay as initialised. The vectors are scaled as a whole (directions and relative lengths kept) to
the RMS of the rows they replace: Word2Vec vectors are ~10x larger than a Transformer's
init_std=0.02 table, and a tied output head would start with huge logits.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import numpy as np

from llmjax.config import ConfigError
from llmjax.training.tree_paths import flat_paths

Log = Callable[[str], None]
KEY = "config.model.embed_init"


def token_table_path(params: Any, vocab_size: int, d_model: int) -> str:
    """The path ("a/b/embedding") of the token table: the one `embedding` leaf of shape (V, d_model)."""
    found = [p for p, leaf in flat_paths(params).items()
             if p.split("/")[-1] == "embedding" and tuple(leaf.shape) == (vocab_size, d_model)]
    if len(found) != 1:
        raise ConfigError(f"{KEY}: this model has {len(found)} embedding tables of shape "
                          f"({vocab_size}, {d_model}) (expected one token table): unset {KEY}")
    return found[0]


def apply(params: Any, vectors_VxD: np.ndarray, model_cfg: Any, log: Log) -> Any:
    """params with the token table's first V rows from vectors_VxD (see the module)."""
    V = vectors_VxD.shape[0]
    where = token_table_path(params, model_cfg.vocab_size, model_cfg.d_model)
    table = flat_paths(params)[where]
    old_rms = float(np.sqrt(np.mean(np.square(np.asarray(jax.device_get(table[:V]), np.float64)))))
    new_rms = float(np.sqrt(np.mean(np.square(vectors_VxD, dtype=np.float64))))
    scale = old_rms / new_rms if new_rms > 0 else 1.0
    rows = (vectors_VxD * scale).astype(table.dtype)
    new = jax.jit(lambda t, r: t.at[:V].set(r), out_shardings=table.sharding)(table, rows)
    log(f"embed_init: {V} rows of {where} from {model_cfg.embed_init} (scaled by {scale:.3g} to the "
        f"initial RMS {old_rms:.3g})")
    leaves, treedef = jax.tree_util.tree_flatten(params)
    leaves[list(flat_paths(params)).index(where)] = new  # flat_paths keeps the leaf order
    return jax.tree_util.tree_unflatten(treedef, leaves)
