"""From documents to batches: token streams cached per run, and stateless packed batches.

`prepare` turns config.data into two token streams (each document followed by EOS), cached in
the run's workdir so a resumed run neither re-reads nor re-tokenizes. `PackedBatches` cuts a
stream into fixed windows and serves the global batch of any step as a pure function of
(seed, step): the only data-iterator state a checkpoint needs is the step, and a resumed run
(on any number of hosts or devices) sees bit-identical batches.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from llmjax.config import DataConfig
from llmjax.data.atomic import atomic_write
from llmjax.data.order import EpochOrder
from llmjax.data.sources import load_documents
from llmjax.data.tokenizers import (Tokenizer, check_compatible, has_tokenizer, load_tokenizer,
                                    train_or_load_tokenizer)

CACHE_FORMAT = 1  # bump when the cached streams' meaning changes


@dataclasses.dataclass
class Prepared:
    """What training needs from the data: the tokenizer and both token streams."""
    tokenizer: Tokenizer
    train_tokens: np.ndarray
    val_tokens: np.ndarray
    stats: dict
    unigram_loss: float  # nats/token of val under train's add-one unigram: the bar to beat


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 65536 else np.uint32)


def tokenize_documents(tokenizer: Tokenizer, docs: Sequence[str]) -> np.ndarray:
    """One 1-D stream: each document's ids followed by EOS."""
    encoded = tokenizer.encode_batch(docs)
    out = np.empty(sum(len(e) + 1 for e in encoded), token_dtype(tokenizer.vocab_size))
    pos = 0
    for e in encoded:
        out[pos:pos + len(e)] = e
        pos += len(e)
        out[pos] = tokenizer.eos_id
        pos += 1
    return out


def unigram_log_probs(train_tokens: np.ndarray, vocab_size: int) -> np.ndarray:
    """log p(id) of train's unigram distribution, add-one smoothed: float64 (vocab_size,)."""
    counts = np.bincount(train_tokens, minlength=vocab_size).astype(np.float64) + 1.0
    return np.log(counts / counts.sum())


def unigram_loss(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of val under train's unigram distribution, add-one smoothed."""
    log_p = unigram_log_probs(train_tokens, vocab_size)
    val_counts = np.bincount(val_tokens, minlength=vocab_size)
    return float(-(val_counts * log_p).sum() / len(val_tokens))


def prepare(cfg: DataConfig, workdir: str, log: Callable[[str], None] = print,
            resuming: bool = False) -> Prepared:
    """Tokenizer in workdir/tokenizer/, streams in workdir/data/; reused when still valid.

    A cache that fails its checks is rebuilt (it is derived data). With resuming=True (the run
    has checkpoints) a source that no longer matches the cache is an error instead: the
    checkpoints were trained on the old corpus. With several processes sharing a workdir, let
    process 0 call this first (then the others only read the cache).
    """
    start = time.time()
    tok_dir, data_dir = os.path.join(workdir, "tokenizer"), os.path.join(workdir, "data")
    key = _source_key(cfg)
    if has_tokenizer(tok_dir):
        tok = load_tokenizer(tok_dir)
        check_compatible(tok, cfg, tok_dir)
        meta = _read_meta(data_dir)
        if resuming and meta is not None and meta.get("fingerprint") != _fingerprint(key, tok):
            raise ValueError(f"the corpus of this run changed since its checkpoints were written "
                             f"({_changes(meta.get('source', {}), key, cfg)}): restore it or "
                             "use a new --workdir")
        cached = _load_cache(data_dir, meta, _fingerprint(key, tok), tok.vocab_size, log)
        if cached is not None:
            train, val, meta = cached
            log(f"data: reusing {meta['stats']['train_tokens']:,} train / "
                f"{meta['stats']['val_tokens']:,} val tokens ({tok.name}) from {data_dir}; "
                f"unigram baseline {meta['unigram_loss']:.3f} nats/token")
            return Prepared(tok, train, val, meta["stats"], meta["unigram_loss"])
    docs = load_documents(cfg, log)
    t = time.time()
    tok = train_or_load_tokenizer(cfg, docs.train, tok_dir, log)
    t_tok = time.time() - t
    t = time.time()
    train, val = tokenize_documents(tok, docs.train), tokenize_documents(tok, docs.val)
    t_enc = time.time() - t
    stats = dict(docs.stats, train_tokens=int(len(train)), val_tokens=int(len(val)),
                 tokenizer=tok.name, vocab_size=tok.vocab_size)
    stats["chars_per_token"] = stats["train_chars"] / max(1, stats["train_tokens"])
    loss = unigram_loss(train, val, tok.vocab_size)
    _save_cache(data_dir, train, val, {"fingerprint": _fingerprint(key, tok), "source": key,
                                       "stats": stats, "unigram_loss": loss,
                                       "sha1": _checksums(train, val)})
    log(f"data: {tok.name}: train {len(train):,} tokens, val {len(val):,} tokens, "
        f"{stats['chars_per_token']:.2f} chars/token; unigram baseline {loss:.3f} nats/token")
    log(f"data: tokenizer {t_tok:.1f}s, encoding {t_enc:.1f}s, {time.time() - start:.1f}s in "
        f"all; cached in {data_dir}")
    return Prepared(tok, train, val, stats, loss)


# ---------------------------------------------------------------- the cache


def _source_key(cfg: DataConfig) -> dict:
    """Everything that decides the documents: config keys and what the source looks like now."""
    key = {"format": CACHE_FORMAT, "dataset": cfg.dataset, "tfds_data_dir": cfg.tfds_data_dir,
           "val_fraction": cfg.val_fraction, "max_train_chars": cfg.max_train_chars}
    if cfg.decode_errors != "strict":  # a lossy read is other documents; strict keeps old caches valid
        key["decode_errors"] = cfg.decode_errors
    if cfg.dataset == "stdlib":
        from llmjax.data.stdlib_corpus import StdlibCorpus
        key["python"] = sys.version.split()[0]
        key["builder_version"] = str(StdlibCorpus.VERSION)
    elif cfg.dataset.startswith("tfds:"):
        key.update(text_key=cfg.text_key, train_split=cfg.train_split, eval_split=cfg.eval_split)
    elif cfg.dataset.startswith("text:"):  # files added, removed or edited invalidate the cache
        files = sorted(f for f in glob.glob(os.path.expanduser(cfg.dataset[5:]), recursive=True)
                       if os.path.isfile(f))
        listing = "\n".join(f"{f}\t{os.path.getsize(f)}\t{os.stat(f).st_mtime_ns}" for f in files)
        key["files"] = hashlib.sha1(listing.encode()).hexdigest()
    return key


def _fingerprint(key: dict, tok: Tokenizer) -> str:
    blob = json.dumps(dict(key, tokenizer=tok.fingerprint()), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _changes(saved: dict, now: dict, cfg: DataConfig) -> str:
    """What differs between the source key the cache was built from and the current one."""
    keys = [k for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
    return ", ".join(f"files matching {cfg.dataset[5:]} were added, removed or edited"
                     if k == "files" else f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                     for k in keys) or "the tokenizer differs"


def _checksums(train: np.ndarray, val: np.ndarray) -> dict[str, str]:
    return {name: hashlib.sha1(np.ascontiguousarray(a).data).hexdigest()
            for name, a in (("train", train), ("val", val))}


def _read_meta(data_dir: str) -> dict | None:
    try:
        with open(os.path.join(data_dir, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) else None


def _load_cache(data_dir: str, meta: dict | None, fingerprint: str, vocab_size: int,
                log: Callable[[str], None]):
    """(train, val, meta) memory-mapped, or None when absent, stale or damaged (logged)."""
    if meta is None or meta.get("fingerprint") != fingerprint:
        return None
    try:
        train = np.load(os.path.join(data_dir, "train.npy"), mmap_mode="r")
        val = np.load(os.path.join(data_dir, "val.npy"), mmap_mode="r")
        problem = None
        if meta.get("sha1") != _checksums(train, val):
            problem = "checksum mismatch"
        elif max(int(train.max(initial=0)), int(val.max(initial=0))) >= vocab_size:
            top = max(int(train.max(initial=0)), int(val.max(initial=0)))
            problem = f"token id {top} >= vocab size {vocab_size}"
    except (OSError, ValueError) as e:
        problem = f"{type(e).__name__}: {e}"
    if problem is not None:
        log(f"data: the token cache in {data_dir} is damaged ({problem}); rebuilding it")
        return None
    return train, val, meta


def _save_cache(data_dir: str, train: np.ndarray, val: np.ndarray, meta: dict) -> None:
    """meta.json goes first (removed) and last (written): it vouches for the arrays."""
    os.makedirs(data_dir, exist_ok=True)
    meta_path = os.path.join(data_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)
    for name, arr in (("train.npy", train), ("val.npy", val)):
        atomic_write(os.path.join(data_dir, name), lambda f, a=arr: np.save(f, a))
    atomic_write(meta_path, lambda f: f.write(json.dumps(meta, indent=1).encode()))


# ---------------------------------------------------------------- batches


class PackedBatches:
    """Windows of seq_len+1 tokens at stride seq_len; the batch of a step is a pure function.

    Rows are visited in llmjax.data.order.EpochOrder: shuffled per epoch for training, in order
    for evaluation (rows past the end are zero-weight padding).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int = 0,
                 shuffle: bool = True, document_mask: bool = False, eos_id: int | None = None):
        if tokens.ndim != 1:
            raise ValueError(f"tokens must be a 1-D stream, got shape {tokens.shape}")
        if seq_len < 1 or batch_size < 1:
            raise ValueError(f"seq_len={seq_len} and batch_size={batch_size} must be positive")
        if document_mask and eos_id is None:
            raise ValueError("document_mask=True needs eos_id (tokenizer.eos_id) to find documents")
        self.tokens, self.seq_len, self.batch_size = tokens, seq_len, batch_size
        self.seed, self.shuffle = seed, shuffle
        self.document_mask, self.eos_id = document_mask, eos_id
        self.num_rows = (len(tokens) - 1) // seq_len
        if self.num_rows < 1:
            raise ValueError(f"the token stream has {len(tokens)} tokens, too few for one row of "
                             f"seq_len+1={seq_len + 1}: lower config.data.seq_len or use more data")
        self._order = EpochOrder(self.num_rows, batch_size, seed, shuffle)

    @property
    def num_batches(self) -> int:
        """Batches that cover every row once (the last one padded when not shuffling)."""
        return self._order.num_batches

    def rows(self, step: int, process_rows: slice | None = None) -> np.ndarray:
        """Row indices of the step's batch (or its process_rows part); -1 marks padding."""
        return self._order.indices(step, process_rows)

    def batch(self, step: int, process_rows: slice | None = None) -> dict[str, np.ndarray]:
        """inputs/targets int32 (B, L), weights float32 (B, L) [+ segment_ids, positions]."""
        idx = self.rows(step, process_rows)
        real = idx >= 0
        L = self.seq_len
        offsets = np.where(real, idx, 0)[:, None] * L + np.arange(L + 1)
        windows = np.asarray(self.tokens[offsets], dtype=np.int32)
        windows[~real] = 0
        out = {"inputs": np.ascontiguousarray(windows[:, :-1]),
               "targets": np.ascontiguousarray(windows[:, 1:]),
               "weights": np.repeat(real.astype(np.float32)[:, None], L, axis=1)}
        if self.document_mask:
            out["segment_ids"], out["positions"] = document_layout(out["inputs"], self.eos_id)
        return out


def document_layout(inputs: np.ndarray, eos_id: int) -> tuple[np.ndarray, np.ndarray]:
    """(segment_ids, positions) of packed rows: a new document starts after each EOS.

    segment_ids are 1-based per row; positions restart at 0 at each document start (and at
    the row start). The EOS itself belongs to the document it ends.
    """
    is_eos = (inputs == eos_id).astype(np.int32)
    segment_ids = 1 + np.cumsum(is_eos, axis=1) - is_eos
    L = inputs.shape[1]
    t = np.arange(L, dtype=np.int32)
    starts = np.zeros_like(is_eos, dtype=bool)
    starts[:, 0] = True
    starts[:, 1:] = is_eos[:, :-1] == 1
    last_start = np.maximum.accumulate(np.where(starts, t, 0), axis=1)
    return segment_ids.astype(np.int32), (t - last_start).astype(np.int32)


def eval_batches(tokens: np.ndarray, seq_len: int, batch_size: int,
                 num_batches: int | None = None, document_mask: bool = False,
                 eos_id: int | None = None) -> Iterator[dict[str, np.ndarray]]:
    """The first num_batches in-order batches (all of them when None or more than exist)."""
    batches = PackedBatches(tokens, seq_len, batch_size, shuffle=False,
                            document_mask=document_mask, eos_id=eos_id)
    n = batches.num_batches if num_batches is None else min(num_batches, batches.num_batches)
    for step in range(n):
        yield batches.batch(step)
