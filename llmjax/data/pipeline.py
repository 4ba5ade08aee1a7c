"""From a config to batches: the prepared corpus of a run, and stateless packed batches.

`prepare` gives the run its tokenizer and two token streams (each document followed by EOS),
prepared once in parallel (llmjax.data.preparation) into the run's workdir/data or a shared
config.data.prepared_dir, and read lazily from their shards (llmjax.data.token_cache), so
neither memory nor start-up time grows with the corpus. `PackedBatches` cuts a stream into
fixed windows and serves the global batch of any step as a pure function of (seed, step): the
only data-iterator state a checkpoint needs is the step, and a resumed run (on any number of
hosts or devices) sees bit-identical batches; each host reads only its own rows.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from llmjax.config import DataConfig
from llmjax.data import holdout, preparation, sources, token_cache
from llmjax.data.atomic import LOCK, locked
from llmjax.data.order import EpochOrder
from llmjax.data.token_cache import TokenStream, token_dtype, unigram_log_probs
from llmjax.data.tokenizers import Tokenizer, check_compatible, has_tokenizer, load_tokenizer

LEGACY_FORMAT = 1  # workdir/data/{train,val}.npy + meta.json, before sharded preparation


@dataclasses.dataclass
class Prepared:
    """What training needs from the data: the tokenizer, both token streams (1-D, read lazily)
    and the train token counts."""
    tokenizer: Tokenizer
    train_tokens: TokenStream | np.ndarray
    val_tokens: TokenStream | np.ndarray
    stats: dict
    unigram_loss: float  # nats/token of val under train's add-one unigram: the bar to beat
    unigram_counts: np.ndarray  # int64 (vocab,) train token counts
    fingerprint: str = ""  # names the corpus and tokenizer (for what is derived from the streams)
    directory: str = ""  # where the corpus is prepared (what is derived from it may go there too)


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


def unigram_loss(train_tokens: np.ndarray, val_tokens: np.ndarray, vocab_size: int) -> float:
    """Cross-entropy (nats/token) of val under train's unigram distribution, add-one smoothed."""
    log_p = unigram_log_probs(np.bincount(train_tokens, minlength=vocab_size))
    val_counts = np.bincount(val_tokens, minlength=vocab_size)
    return float(-(val_counts * log_p).sum() / len(val_tokens))


def prepared_dir(cfg: DataConfig, workdir: str) -> str:
    """Where cfg's corpus is prepared: config.data.prepared_dir (shared by runs and sweeps, or
    made by `llmjax.prepare`), else the run's own workdir/data."""
    return os.path.expanduser(cfg.prepared_dir) if cfg.prepared_dir else os.path.join(workdir, "data")


def prepare(cfg: DataConfig, workdir: str, log: Callable[[str], None] = print,
            resuming: bool = False) -> Prepared:
    """The run's tokenizer (workdir/tokenizer/) and token streams, prepared once and reused.

    A preparation that fails its checks in the run's own workdir/data is rebuilt (derived
    data); in a shared prepared_dir it is a one-line error. With resuming=True (the run has
    checkpoints) a source that no longer matches is an error: the checkpoints were trained on
    the old corpus. With several processes sharing a workdir, let process 0 call this first
    (then the others only read).
    """
    run_tok = os.path.join(workdir, "tokenizer")
    directory = prepared_dir(cfg, workdir)
    own = not cfg.prepared_dir
    key = source_key(cfg)
    if has_tokenizer(run_tok):
        tok = load_tokenizer(run_tok)
        check_compatible(tok, cfg, run_tok)
        legacy = _legacy_cache(os.path.join(workdir, "data"), cfg, tok, log, resuming)
        if legacy is not None:
            return legacy
    build = functools.partial(preparation.build, cfg, directory, key,
                              lambda t: fingerprint(key, t), log, workers=cfg.num_workers,
                              tokenizer_dir=run_tok if has_tokenizer(run_tok) else None)
    prep_tok = os.path.join(directory, "tokenizer")
    with locked(directory):
        manifest = _reusable(directory, cfg, key, run_tok, resuming, own, log)
        if manifest is None:
            manifest = build()
        else:
            s = manifest["stats"]
            log(f"data: reusing {s['train_tokens']:,} train / {s['val_tokens']:,} val tokens "
                f"({s['tokenizer']}) from {directory}; unigram baseline "
                f"{manifest['unigram_loss']:.3f} nats/token")
        tok = load_tokenizer(prep_tok)
        try:
            streams, counts = token_cache.open_streams(directory, manifest, tok.vocab_size)
        except token_cache.CacheError as e:
            if not own:
                raise
            log(f"data: the prepared corpus in {directory} is damaged ({e}); rebuilding it")
            _remove(directory)
            manifest = build()
            tok = load_tokenizer(prep_tok)
            streams, counts = token_cache.open_streams(directory, manifest, tok.vocab_size,
                                                       verify=True)
    if not has_tokenizer(run_tok):
        shutil.copytree(prep_tok, run_tok)
    return Prepared(tok, streams["train"], streams["val"], manifest["stats"],
                    manifest["unigram_loss"], counts, manifest["fingerprint"], directory)


def _reusable(directory: str, cfg: DataConfig, key: dict, run_tok: str, resuming: bool, own: bool,
              log: Callable[[str], None]) -> dict | None:
    """The manifest of a finished preparation of this corpus in directory, or None to build."""
    manifest = token_cache.read_manifest(directory)
    prep_tok = os.path.join(directory, "tokenizer")
    if manifest is None:
        if os.path.isdir(directory) and not os.path.exists(os.path.join(directory, "work")) \
                and os.listdir(directory) and own:
            _remove(directory)  # an older layout (train.npy): derived data, rebuilt
        return None
    tok = load_tokenizer(prep_tok)
    check_compatible(tok, cfg, prep_tok)
    if has_tokenizer(run_tok) and load_tokenizer(run_tok).fingerprint() != tok.fingerprint():
        raise ValueError(f"the corpus in {directory} was encoded with another tokenizer than "
                         f"this run's ({run_tok}): use another config.data.prepared_dir")
    if manifest.get("fingerprint") == fingerprint(key, tok):
        return manifest
    changes = _changes(manifest.get("source", {}), key, cfg)
    if resuming:
        raise ValueError(f"the corpus of this run changed since its checkpoints were written "
                         f"({changes}): restore it or use a new --workdir")
    if not own:
        raise ValueError(f"config.data.prepared_dir={cfg.prepared_dir!r} holds another corpus "
                         f"({changes}): point it elsewhere, or delete it to prepare this one")
    log(f"data: the corpus changed ({changes}); preparing it again")
    _remove(directory)
    return None


def _remove(directory: str) -> None:
    """Empty a run's own derived data directory (the lock file stays)."""
    for name in os.listdir(directory):
        if name != LOCK:
            path = os.path.join(directory, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)




# ---------------------------------------------------------------- what decides the corpus


def source_key(cfg: DataConfig, fmt: int = token_cache.FORMAT) -> dict:
    """Everything that decides the documents: config keys and what the source looks like now."""
    key = {"format": fmt, "dataset": cfg.dataset, "tfds_data_dir": cfg.tfds_data_dir,
           "val_fraction": cfg.val_fraction, "max_train_chars": cfg.max_train_chars}
    if cfg.holdout:  # other train documents; none held out keeps old caches valid
        key["holdout"] = ",".join(holdout.parse(cfg.holdout))
    if cfg.decode_errors != "strict":  # a lossy read is other documents; strict keeps old caches valid
        key["decode_errors"] = cfg.decode_errors
    kind, _, rest = cfg.dataset.partition(":")
    if cfg.dataset == "stdlib":
        from llmjax.data.stdlib_corpus import StdlibCorpus
        key["python"] = sys.version.split()[0]
        key["builder_version"] = str(StdlibCorpus.VERSION)
    elif kind in ("tfds", "hf_disk"):
        key.update(text_key=cfg.text_key, train_split=cfg.train_split, eval_split=cfg.eval_split)
    if kind in ("jsonl", "parquet"):
        key["text_key"] = cfg.text_key
    if kind in ("text", "jsonl", "parquet", "hf_disk"):  # files added, removed or edited
        pattern = os.path.join(rest, "**") if kind == "hf_disk" else rest
        files = sorted(f for f in glob.glob(os.path.expanduser(pattern), recursive=True)
                       if os.path.isfile(f))
        key["files"] = sources.files_digest(files)
    return key


def fingerprint(key: dict, tok: Tokenizer) -> str:
    blob = json.dumps(dict(key, tokenizer=tok.fingerprint()), sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()


def _changes(saved: dict, now: dict, cfg: DataConfig) -> str:
    """What differs between the source key the corpus was prepared from and the current one."""
    keys = [k for k in sorted(saved.keys() | now.keys()) if saved.get(k) != now.get(k)]
    return ", ".join(f"files matching {cfg.dataset.partition(':')[2]} were added, removed or edited"
                     if k == "files" else f"{k}: {saved.get(k)!r} -> {now.get(k)!r}"
                     for k in keys) or "the tokenizer differs"


def _legacy_cache(data_dir: str, cfg: DataConfig, tok: Tokenizer, log: Callable[[str], None],
                  resuming: bool) -> Prepared | None:
    """A run prepared before sharded preparation (train.npy, val.npy, meta.json) keeps its
    streams while its source is unchanged, so it resumes on exactly the tokens it trained on."""
    try:
        with open(os.path.join(data_dir, "meta.json"), encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError):
        return None
    key = source_key(cfg, LEGACY_FORMAT)
    if resuming and isinstance(meta, dict) and meta.get("fingerprint") != fingerprint(key, tok):
        raise ValueError(f"the corpus of this run changed since its checkpoints were written "
                         f"({_changes(meta.get('source', {}), key, cfg)}): restore it or use a "
                         "new --workdir")
    try:
        if meta.get("fingerprint") != fingerprint(key, tok):
            return None
        train = np.load(os.path.join(data_dir, "train.npy"), mmap_mode="r")
        val = np.load(os.path.join(data_dir, "val.npy"), mmap_mode="r")
        if meta.get("sha1") != {n: hashlib.sha1(np.ascontiguousarray(a).data).hexdigest()
                                for n, a in (("train", train), ("val", val))}:
            return None
    except (OSError, ValueError, AttributeError):
        return None
    log(f"data: reusing {len(train):,} train / {len(val):,} val tokens from {data_dir} "
        "(prepared by an earlier llmjax)")
    counts = np.bincount(train, minlength=tok.vocab_size)[:tok.vocab_size].astype(np.int64)
    return Prepared(tok, train, val, meta["stats"], meta["unigram_loss"], counts, meta["fingerprint"],
                    data_dir)


# ---------------------------------------------------------------- batches


class PackedBatches:
    """Windows of seq_len+1 tokens at stride seq_len; the batch of a step is a pure function.

    Rows are visited in llmjax.data.order.EpochOrder: shuffled per epoch for training, in order
    for evaluation (rows past the end are zero-weight padding). max_tokens > 0 on a longer
    stream: only a fixed random sample of max_tokens // seq_len rows (an eval budget).
    """

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int = 0,
                 shuffle: bool = True, document_mask: bool = False, eos_id: int | None = None,
                 max_tokens: int = 0):
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
        self._subset = None  # max_tokens: a fixed random sample of rows, the same in every run
        if max_tokens and self.num_rows * seq_len > max_tokens:
            picked = np.random.default_rng(0).choice(self.num_rows, max(1, max_tokens // seq_len),
                                                     replace=False)
            self._subset = np.sort(picked)
        self._order = EpochOrder(len(self._subset) if self._subset is not None else self.num_rows,
                                 batch_size, seed, shuffle)

    @property
    def num_batches(self) -> int:
        """Batches that cover every row once (the last one padded when not shuffling)."""
        return self._order.num_batches

    @property
    def rows_visited(self) -> int:
        """Rows a pass visits: all, or the max_tokens sample."""
        return self._order.num_examples

    def rows(self, step: int, process_rows: slice | None = None) -> np.ndarray:
        """Row indices of the step's batch (or its process_rows part); -1 marks padding."""
        idx = self._order.indices(step, process_rows)
        if self._subset is not None:
            idx = np.where(idx >= 0, self._subset[np.maximum(idx, 0)], -1)
        return idx

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
