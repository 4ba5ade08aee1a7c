"""Preparing a corpus of any size: two streaming passes over its units in worker processes.

  scan    each worker streams a unit (llmjax.data.sources) and records, per document, a
          16-byte content hash, its length and its split, plus a bottom-k sample of its train
          documents (the k smallest hashes, up to spm_train_chars characters)
  merge   one process finds exact duplicates over all hashes (the first in corpus order is
          kept: 40 bytes a document, about 40 MB per million), applies max_train_chars, and
          trains the tokenizer on the merged sample (a uniform random sample of the train
          documents, not a prefix; the same for any number of workers)
  encode  each worker streams its unit again, drops what merge marked, encodes, and writes the
          unit's train and val shards (llmjax.data.token_cache) with its token counts
  finish  the manifest, written last

Each unit's scan and encode results are files of their own, written atomically: a preparation
that is killed resumes from its finished units and never serves a half-written shard. Memory
is one unit's documents per worker and the hashes in the merging process, whatever the corpus
size. Workers are spawned (not forked: the parent may hold JAX's threads).
"""
from __future__ import annotations

import concurrent.futures
import concurrent.futures.process  # BrokenProcessPool: not loaded until a pool starts
import hashlib
import heapq
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence

import numpy as np

from llmjax.config import DataConfig, UserError
from llmjax.data import sources, token_cache
from llmjax.data.atomic import atomic_write, write_error
from llmjax.data.tokenizers import (Tokenizer, check_compatible, has_tokenizer, load_tokenizer,
                                    train_tokenizer)
from llmjax.data.workers import Workers, default_workers, in_worker

Log = Callable[[str], None]
_ENCODE_CHARS = 4 << 20  # documents are encoded in batches of about this many characters
_SMALL_CORPUS = 32 << 20  # bytes: prepared without worker processes unless asked


def content_hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _is_val(digest: bytes, val_fraction: float) -> bool:
    """The held-out split of a source that has none: fixed by the document's content hash."""
    return int.from_bytes(digest[8:16], "little") % 1000 < val_fraction * 1000


def _work(directory: str, *parts: str) -> str:
    return os.path.join(directory, "work", *parts)


# ---------------------------------------------------------------- pass 1: scan


def scan_unit(unit: sources.Unit, cfg: DataConfig, directory: str, sample: bool) -> dict:
    """Hashes, lengths and splits of a unit's documents (work/scan-N.npz) and its sample."""
    path = _work(directory, f"scan-{unit.index:06d}.npz")
    if os.path.exists(path):
        with np.load(path) as z:
            return {"index": unit.index, "train_chars": int(z["chars"][~z["val"]].sum())}
    counts: dict = {}
    digests, chars, val = [], [], []
    sample_k = BottomK(cfg.spm_train_chars)
    for _, text in sources.read_unit(unit, cfg, counts):
        d = content_hash(text)
        is_val = unit.split == "val" if unit.split else _is_val(d, cfg.val_fraction)
        digests.append(d)
        chars.append(len(text))
        val.append(is_val)
        if sample and not is_val:
            sample_k.add(int.from_bytes(d[:8], "little"), text[:cfg.spm_train_chars])
    if sample:
        atomic_write(_work(directory, f"sample-{unit.index:06d}.json"),
                     lambda f: f.write(json.dumps(sample_k.items()).encode()))
    hashes = np.frombuffer(b"".join(digests), np.uint64).reshape(-1, 2)
    atomic_write(path, lambda f: np.savez(f, hashes=hashes, chars=np.asarray(chars, np.int64),
                                          val=np.asarray(val, bool),
                                          counts=json.dumps(counts)))
    return {"index": unit.index, "train_chars": int(np.sum(np.asarray(chars)[~np.asarray(val, bool)]))}


def _load_scans(directory: str, units: Sequence[sources.Unit]) -> list[dict]:
    out = []
    for u in units:
        with np.load(_work(directory, f"scan-{u.index:06d}.npz")) as z:
            out.append({"hashes": z["hashes"], "chars": z["chars"], "val": z["val"],
                        "counts": json.loads(str(z["counts"]))})
    return out


# ---------------------------------------------------------------- merge


def keep_masks(scans: Sequence[dict], max_train_chars: int
               ) -> tuple[list[tuple[np.ndarray, tuple[int, int] | None]], dict]:
    """Per unit, which documents survive, and where the cap cuts one: the first of each exact
    duplicate (corpus order); train text up to max_train_chars (0: no cap), the document that
    crosses it cut to (its index in the unit, the characters kept)."""
    hashes = np.concatenate([s["hashes"] for s in scans]) if scans else np.zeros((0, 2), np.uint64)
    order = np.lexsort((hashes[:, 1], hashes[:, 0]))  # stable: equal hashes stay in corpus order
    sorted_h = hashes[order]
    first = np.ones(len(order), bool)
    first[1:] = np.any(sorted_h[1:] != sorted_h[:-1], axis=1)
    keep = np.zeros(len(order), bool)
    keep[order[first]] = True
    del order, sorted_h, first
    stats = {"duplicates_dropped": int((~keep).sum()), "train_capped": False}
    out, pos, train_chars = [], 0, 0
    for s in scans:
        k, cut = keep[pos:pos + len(s["chars"])].copy(), None
        pos += len(s["chars"])
        if max_train_chars:
            for i in np.flatnonzero(k & ~s["val"]):
                room = max_train_chars - train_chars
                if room <= 0:
                    k[i] = False
                elif s["chars"][i] >= room:
                    cut, stats["train_capped"] = (int(i), room), True
                train_chars += min(int(s["chars"][i]), max(room, 0))
        out.append((k, cut))
    return out, stats


def merged_sample(directory: str, units: Sequence[sources.Unit], budget: int) -> list[str]:
    """The train documents of smallest hash over all units, up to budget characters (the
    document that crosses it included), in hash order. One unit's sample is read at a time:
    memory is about twice the budget, however many units there are."""
    merged = BottomK(budget)
    for u in units:
        path = _work(directory, f"sample-{u.index:06d}.json")
        if os.path.exists(path):
            with open(path, encoding="utf-8") as f:
                for priority, text in json.load(f):
                    merged.add(priority, text)
    return [text for _, text in merged.items()]


class BottomK:
    """The texts of smallest priority (a hash) up to `budget` characters, the one that crosses
    it included; a priority seen again (the same document) is held once."""

    def __init__(self, budget: int):
        self.budget, self.held = budget, 0
        self._heap: list[tuple[int, str]] = []  # (-priority, text): a max-heap
        self._priorities: set[int] = set()

    def add(self, priority: int, text: str) -> None:
        if priority in self._priorities or (self.held >= self.budget
                                            and priority > -self._heap[0][0]):
            return
        heapq.heappush(self._heap, (-priority, text))
        self._priorities.add(priority)
        self.held += len(text)
        while self.held - len(self._heap[0][1]) >= self.budget:
            p, t = heapq.heappop(self._heap)
            self.held -= len(t)
            self._priorities.discard(-p)

    def items(self) -> list[tuple[int, str]]:
        """(priority, text) in priority order."""
        return sorted((-p, t) for p, t in self._heap)


# ---------------------------------------------------------------- pass 2: encode


_TOKENIZERS: dict[str, Tokenizer] = {}


def _tokenizer(directory: str) -> Tokenizer:
    """The tokenizer in directory, loaded once a process (keyed by its file's identity)."""
    st = os.stat(os.path.join(directory, "tokenizer.json"))
    key = f"{directory}:{st.st_ino}:{st.st_mtime_ns}"
    if key not in _TOKENIZERS:
        _TOKENIZERS[key] = load_tokenizer(directory)
    return _TOKENIZERS[key]


def _encode(tok: Tokenizer, texts: list[str]) -> list[np.ndarray]:
    if tok.kind == "sentencepiece" and in_worker():
        return tok.encode_batch(texts, num_threads=1)
    return tok.encode_batch(texts)  # in this process: the tokenizer's own threads


def encode_unit(unit: sources.Unit, cfg: DataConfig, directory: str,
                keep: tuple[np.ndarray, tuple[int, int] | None], val: np.ndarray) -> dict:
    """The unit's train and val shards and work/done-N.json (tokens, sha1, unigram counts);
    keep: keep_masks' mask and cut for this unit; val: its documents' splits from the scan."""
    done = _work(directory, f"done-{unit.index:06d}.json")
    if os.path.exists(done):
        with open(done, encoding="utf-8") as f:
            return json.load(f)
    mask, cut = keep
    tok = _tokenizer(os.path.join(directory, "tokenizer"))
    dtype = token_cache.token_dtype(tok.vocab_size)
    eos = np.asarray([tok.eos_id], dtype)
    paths = {s: token_cache.shard_path(directory, s, unit.index) for s in token_cache.SPLITS}
    tmp = {s: f"{p}.tmp{os.getpid()}" for s, p in paths.items()}
    sha = {s: hashlib.sha1() for s in token_cache.SPLITS}
    tokens = dict.fromkeys(token_cache.SPLITS, 0)
    docs = dict.fromkeys(token_cache.SPLITS, 0)
    chars = dict.fromkeys(token_cache.SPLITS, 0)
    unigram = np.zeros(tok.vocab_size, np.int64)
    files = {s: open(tmp[s], "wb") for s in token_cache.SPLITS}
    try:
        def flush(split: str, texts: list[str]) -> None:
            nonlocal unigram
            ids = _encode(tok, texts)
            out = np.concatenate([np.concatenate([np.asarray(e, dtype), eos]) for e in ids])
            data = out.tobytes()
            try:
                files[split].write(data)
            except OSError as e:
                raise _write_failed(paths[split], e) from e
            sha[split].update(data)
            tokens[split] += len(out)
            if split == "train":
                unigram += np.bincount(out, minlength=tok.vocab_size)[:tok.vocab_size]

        pending = {s: [] for s in token_cache.SPLITS}
        held = dict.fromkeys(token_cache.SPLITS, 0)
        n = 0
        for n, (_, text) in enumerate(sources.read_unit(unit, cfg, {}), start=1):
            if n > len(mask):
                break
            if not mask[n - 1]:
                continue
            split = "val" if val[n - 1] else "train"
            if cut is not None and cut[0] == n - 1:
                text = text[:cut[1]]
            pending[split].append(text)
            held[split] += len(text)
            docs[split] += 1
            chars[split] += len(text)
            if held[split] >= _ENCODE_CHARS:
                flush(split, pending[split])
                pending[split], held[split] = [], 0
        if n != len(mask):
            raise ValueError(f"{unit.path} changed during preparation (documents: {len(mask)} "
                             f"scanned, {n}+ now): leave the corpus unchanged while it is "
                             "prepared, then run the same command again")
        for split in token_cache.SPLITS:
            if pending[split]:
                flush(split, pending[split])
        for split, f in files.items():
            try:
                f.flush()
                os.fsync(f.fileno())
            except OSError as e:
                raise _write_failed(paths[split], e) from e
            f.close()
            os.replace(tmp[split], paths[split])
    except BaseException:
        for split, f in files.items():
            f.close()
            if os.path.exists(tmp[split]):
                os.remove(tmp[split])
        raise
    record = {"index": unit.index, "tokens": tokens, "documents": docs, "chars": chars,
              "sha1": {s: h.hexdigest() for s, h in sha.items()}}
    atomic_write(_work(directory, f"unigram-{unit.index:06d}.npy"), lambda f: np.save(f, unigram))
    atomic_write(done, lambda f: f.write(json.dumps(record).encode()))
    return record


def _write_failed(path: str, e: OSError) -> UserError:
    return write_error(f"cannot write {path}", e, "make it writable, then run the same command "
                       "again to resume")


# ---------------------------------------------------------------- the driver


def build(cfg: DataConfig, directory: str, source_key: dict, fingerprint: Callable[[Tokenizer], str],
          log: Log = print, workers: int = 0, tokenizer_dir: str | None = None,
          shard: tuple[int, int] = (0, 1)) -> dict | None:
    """Prepare cfg's corpus into directory (resuming a stopped preparation); the manifest.

    tokenizer_dir: a tokenizer to encode with (a run's own, or a Hugging Face model's) instead
    of training one. shard=(i, n): this is machine i of n sharing directory (a shared file
    system); each scans and encodes the units i, i+n, ...; machine 0 trains the tokenizer and
    writes the manifest (the others return None), each waiting for the others' files.
    """
    start = time.time()
    os.makedirs(_work(directory), exist_ok=True)
    os.makedirs(os.path.join(directory, "tokens"), exist_ok=True)
    _check_same_source(directory, source_key)
    units = sources.list_units(cfg)
    if not workers:  # one a core; a small corpus in this process (a worker takes ~1 s to start)
        small = sum(u.size for u in units) < _SMALL_CORPUS
        workers = 1 if small else min(default_workers(), len(units))
    tok_dir = os.path.join(directory, "tokenizer")
    if tokenizer_dir and not has_tokenizer(tok_dir) and shard[0] == 0:
        shutil.copytree(tokenizer_dir, tok_dir, dirs_exist_ok=True)
    need_sample = not tokenizer_dir and not has_tokenizer(tok_dir) \
        and cfg.tokenizer in ("sentencepiece", "char", "word")
    log(f"data: preparing {cfg.dataset} in {directory}: {len(units)} units, {workers} workers"
        + (f", machine {shard[0]} of {shard[1]}" if shard[1] > 1 else ""))
    pool = Workers(workers)
    try:
        manifest = _build(cfg, directory, source_key, fingerprint, log, units, need_sample, pool,
                          shard)
    except concurrent.futures.process.BrokenProcessPool:
        pool.close(cancel=True)
        raise UserError(f"a preparation worker died (out of memory, or killed): run the same "
                        f"command again to resume, with fewer --config.data.num_workers "
                        f"than {workers} if memory is short") from None
    except BaseException:
        pool.close(cancel=True)
        raise
    pool.close()
    if manifest is not None:
        shutil.rmtree(_work(directory), ignore_errors=True)  # the manifest vouches for the rest
    log(f"data: {time.time() - start:.1f}s in all")
    return manifest


def _build(cfg, directory, source_key, fingerprint, log, units, need_sample, pool, shard):
    i, n = shard
    mine = [u for u in units if u.index % n == i]
    _remove_stale(directory, {u.index for u in mine})
    tok_dir = os.path.join(directory, "tokenizer")
    t = time.time()
    if n == 1:
        units = _scan(units, cfg, directory, need_sample, pool)
    else:
        list(pool.imap(scan_unit, [(u, cfg, directory, need_sample) for u in mine]))
        _wait(log, "the other machines' scans",
              [_work(directory, f"scan-{u.index:06d}.npz") for u in units])
    scans = _load_scans(directory, units)
    masks, merge_stats = keep_masks(scans, cfg.max_train_chars)
    t_scan = time.time() - t

    t = time.time()
    if has_tokenizer(tok_dir) or i > 0:
        _wait(log, "machine 0's tokenizer", [os.path.join(tok_dir, "tokenizer.json")])
        tok = load_tokenizer(tok_dir)
        check_compatible(tok, cfg, tok_dir)
    else:
        sample = merged_sample(directory, units, cfg.spm_train_chars) if need_sample else []
        if need_sample and not sample:
            raise ValueError(f"data.dataset={cfg.dataset!r}: the training split has no text: "
                             "check the dataset and config.data.train_split")
        tok = train_tokenizer(cfg, sample)
        tok.save(tok_dir)
    t_tok = time.time() - t

    t = time.time()
    jobs = [(u, cfg, directory, m, sc["val"]) for u, m, sc in zip(units, masks, scans)
            if u.index % n == i]
    records = list(pool.imap(encode_unit, jobs))
    t_enc = time.time() - t
    if i > 0:
        log(f"data: {len(records)} units encoded; machine 0 writes the manifest")
        return None
    if n > 1:
        _wait(log, "the other machines' shards",
              [_work(directory, f"done-{u.index:06d}.json") for u in units])
        records = [encode_unit(u, cfg, directory, m, sc["val"])  # all done: reads their records
                   for u, m, sc in zip(units, masks, scans)]
    manifest = _finish(directory, cfg, tok, units, scans, records, merge_stats, source_key,
                       fingerprint(tok))
    s = manifest["stats"]
    log(f"data: {tok.name}: train {s['train_tokens']:,} tokens ({s['train_documents']:,} docs), "
        f"val {s['val_tokens']:,} tokens ({s['val_documents']:,} docs), {s['chars_per_token']:.2f} "
        f"chars/token; dropped {s['empty_dropped']} empty and {s['duplicates_dropped']} duplicate")
    if "replaced" in s:
        log(f"data: decode_errors=replace: {s['replaced']} undecodable byte sequences read as "
            f"U+FFFD in {s['with_replacements']} of {s['documents_read']} documents")
    log(f"data: scan {t_scan:.1f}s, tokenizer {t_tok:.1f}s, encoding {t_enc:.1f}s")
    return manifest


def _remove_stale(directory: str, mine: set[int]) -> None:
    """Temporary files a killed preparation left for this machine's units (never another's:
    it may be writing them now)."""
    for sub in ("tokens", "work"):
        for name in os.listdir(os.path.join(directory, sub)):
            m = _TMP.match(name)
            if m and int(m.group(1)) in mine:
                os.remove(os.path.join(directory, sub, name))


_TMP = re.compile(r"^[a-z]+-(\d+)\.[a-z]+\.tmp\d+$")


def _wait(log: Log, what: str, paths: Sequence[str], poll: float = 2.0) -> None:
    """Until every path exists (files another machine writes into the shared directory)."""
    missing = [p for p in paths if not os.path.exists(p)]
    last = 0.0
    while missing:
        if time.time() - last > 60:
            log(f"data: waiting for {what} ({len(missing)} files, e.g. {missing[0]})")
            last = time.time()
        time.sleep(poll)
        missing = [p for p in missing if not os.path.exists(p)]


def _scan(units, cfg: DataConfig, directory: str, sample: bool, workers: Workers) -> list:
    """Scan units in corpus order; once max_train_chars of train text is read, only a
    pre-split source's val units are still scanned. The units scanned."""
    scanned, train_chars = [], 0

    def jobs():
        for u in units:
            if cfg.max_train_chars and train_chars >= cfg.max_train_chars and u.split != "val":
                continue
            scanned.append(u)
            yield u, cfg, directory, sample

    for r in workers.imap(scan_unit, jobs()):
        train_chars += r["train_chars"]
    return scanned


def _check_same_source(directory: str, source_key: dict) -> None:
    """A directory half-prepared from another source is refused, not mixed."""
    path = _work(directory, "source.json")
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            saved = json.load(f)
        if saved != source_key:
            raise ValueError(f"{directory} holds part of another preparation (source "
                             f"{saved.get('dataset')!r}): use another directory, or delete it")
    else:
        atomic_write(path, lambda f: f.write(json.dumps(source_key, sort_keys=True).encode()))


def _finish(directory, cfg, tok, units, scans, records, merge_stats, source_key, fingerprint) -> dict:
    dtype = token_cache.token_dtype(tok.vocab_size)
    unigram = np.zeros(tok.vocab_size, np.int64)
    shards = {s: [] for s in token_cache.SPLITS}
    totals = {f"{s}_{k}": 0 for s in token_cache.SPLITS for k in ("tokens", "documents", "chars")}
    for r in records:
        unigram += np.load(_work(directory, f"unigram-{r['index']:06d}.npy"))
        for s in token_cache.SPLITS:
            file = os.path.relpath(token_cache.shard_path(directory, s, r["index"]), directory)
            shards[s].append({"file": file, "tokens": r["tokens"][s], "sha1": r["sha1"][s]})
            for k in ("tokens", "documents", "chars"):
                totals[f"{s}_{k}"] += r[k][s]
    if not totals["train_tokens"]:
        raise ValueError(f"data.dataset={cfg.dataset!r}: the training split has no text: check "
                         "the dataset and config.data.train_split")
    if not totals["val_tokens"]:
        repeats = (f" (or its documents all repeat train ones: {merge_stats['duplicates_dropped']} "
                   "duplicates were dropped)" if merge_stats["duplicates_dropped"] else "")
        raise ValueError(f"data.dataset={cfg.dataset!r}: the validation split is empty{repeats}: "
                         "raise config.data.val_fraction, add text or pick another eval_split")
    counts: dict = {}
    for s in scans:
        for k, v in s["counts"].items():
            counts[k] = counts.get(k, 0) + v
    stats = dict(documents_read=counts.get("documents_read", 0),
                 empty_dropped=counts.get("empty_dropped", 0), **merge_stats, **totals,
                 tokenizer=tok.name, vocab_size=tok.vocab_size, units=len(units))
    if cfg.decode_errors == "replace":
        stats.update(replaced=counts.get("replaced", 0),
                     with_replacements=counts.get("with_replacements", 0))
    stats["chars_per_token"] = stats["train_chars"] / max(1, stats["train_tokens"])
    np.save(os.path.join(directory, token_cache.UNIGRAM), unigram)
    val_counts = token_cache.TokenStream(
        [os.path.join(directory, s["file"]) for s in shards["val"]],
        [s["tokens"] for s in shards["val"]], dtype).counts(tok.vocab_size)
    log_p = token_cache.unigram_log_probs(unigram)
    manifest = {"fingerprint": fingerprint, "source": source_key, "dtype": dtype.name,
                "shards": shards, "stats": stats,
                "unigram_sha1": hashlib.sha1(unigram.tobytes()).hexdigest(),
                "unigram_loss": float(-(val_counts * log_p).sum() / max(1, val_counts.sum()))}
    token_cache.write_manifest(directory, manifest)
    return manifest
