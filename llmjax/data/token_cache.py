"""The prepared corpus on disk: token shards, a manifest that vouches for them, and a reader.

A prepared directory holds

  tokenizer/                 the tokenizer the shards were encoded with
  tokens/{train,val}-N.bin   raw little-endian token ids (uint16, or uint32 for vocabularies
                             of 65,536 and more), each document followed by EOS
  unigram.npy                int64 (vocab,) counts of the train tokens: the unigram baseline
  manifest.json              written last: the shards in corpus order with their token counts
                             and sha1, the source it was built from, the statistics

A directory without manifest.json is unfinished (a preparation that was stopped resumes from
its finished units; see llmjax.data.preparation). `TokenStream` concatenates a split's shards
without reading them: a batch reads only the windows it needs, so a host's memory holds its
own rows, whatever the corpus size.
"""
from __future__ import annotations

import collections
import hashlib
import json
import os
from collections.abc import Sequence

import numpy as np

from llmjax.data.atomic import atomic_write

FORMAT = 2  # bump when the shards' meaning changes
MANIFEST = "manifest.json"
UNIGRAM = "unigram.npy"
SPLITS = ("train", "val")
VERIFY_ALL_BYTES = 256 << 20  # caches up to this size are fully checksummed at every load
OPEN_SHARDS = 128  # memory maps a stream keeps open


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16 if vocab_size < 65536 else np.uint32)


def file_sha1(path: str, block: int = 1 << 22) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def unigram_log_probs(counts: np.ndarray) -> np.ndarray:
    """log p(id) of a unigram distribution from token counts, add-one smoothed: float64."""
    counts = np.asarray(counts, np.float64) + 1.0
    return np.log(counts / counts.sum())


class CacheError(ValueError):
    """A prepared directory that is unfinished, damaged or for another corpus (one line)."""


class TokenStream:
    """The shards of one split as one 1-D array of token ids (len, fancy indexing).

    Shards are memory-mapped when first read, so a process touches only the shards its rows
    fall in; a window that straddles two shards reads from both.
    """

    def __init__(self, paths: Sequence[str], lengths: Sequence[int], dtype: np.dtype):
        keep = [(p, n) for p, n in zip(paths, lengths) if n > 0]
        self.paths = [p for p, _ in keep]
        self.lengths = [int(n) for _, n in keep]
        self.dtype = np.dtype(dtype)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths, dtype=np.int64)])
        self._maps: collections.OrderedDict[int, np.ndarray] = collections.OrderedDict()

    def __len__(self) -> int:
        return int(self.starts[-1])

    @property
    def ndim(self) -> int:
        return 1

    @property
    def shape(self) -> tuple[int]:
        return (len(self),)

    def _shard(self, i: int) -> np.ndarray:
        """Shard i memory-mapped; the most recently used OPEN_SHARDS stay open (each holds a
        file descriptor, and a large corpus has thousands of shards)."""
        if i in self._maps:
            self._maps.move_to_end(i)
        else:
            self._maps[i] = np.memmap(self.paths[i], self.dtype, mode="r", shape=(self.lengths[i],))
            while len(self._maps) > OPEN_SHARDS:
                self._maps.popitem(last=False)
        return self._maps[i]

    def __getitem__(self, index) -> np.ndarray:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            if step != 1:
                return self[np.arange(start, stop, step)]
            return self._range(start, max(start, stop))
        idx = np.asarray(index, np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"token index out of range [0, {len(self)})")
        if len(self.lengths) == 1:
            return np.asarray(self._shard(0)[idx])
        out = np.empty(idx.shape, self.dtype)
        shard = np.searchsorted(self.starts, idx, side="right") - 1
        for i in np.unique(shard):
            sel = shard == i
            out[sel] = self._shard(int(i))[idx[sel] - self.starts[i]]
        return out

    def _range(self, start: int, stop: int) -> np.ndarray:
        """Tokens [start, stop) copied shard by shard (no index array: a block of the stream
        costs its own bytes only)."""
        first = int(np.searchsorted(self.starts, start, side="right")) - 1
        last = int(np.searchsorted(self.starts, stop, side="left"))
        parts = [self._shard(i)[max(start - self.starts[i], 0):stop - self.starts[i]]
                 for i in range(max(first, 0), min(last, len(self.lengths)))]
        return np.concatenate(parts) if parts else np.zeros(0, self.dtype)

    def part(self, first: int, end: int) -> TokenStream:
        """Shards [first, end) as a stream of their own (picklable: it holds no open maps)."""
        return TokenStream(self.paths[first:end], self.lengths[first:end], self.dtype)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        """The whole split in memory (for code that needs it all at once)."""
        whole = np.concatenate([self._shard(i) for i in range(len(self.lengths))]) \
            if self.lengths else np.zeros(0, self.dtype)
        return whole if dtype is None else whole.astype(dtype)

    def counts(self, vocab_size: int, block: int = 1 << 24) -> np.ndarray:
        """int64 (vocab_size,) occurrences of each id, read a block at a time."""
        total = np.zeros(vocab_size, np.int64)
        for i in range(len(self.lengths)):
            shard = self._shard(i)
            for s in range(0, len(shard), block):
                total += np.bincount(shard[s:s + block], minlength=vocab_size)[:vocab_size]
        return total


def read_manifest(directory: str) -> dict | None:
    """The manifest, or None when the directory holds no finished preparation."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CacheError(f"{os.path.join(directory, MANIFEST)} is unreadable ({e}): delete "
                         f"{directory} to prepare the corpus again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return None
    return manifest


def write_manifest(directory: str, manifest: dict) -> None:
    atomic_write(os.path.join(directory, MANIFEST),
                 lambda f: f.write(json.dumps(dict(manifest, format=FORMAT), indent=1).encode()))


def open_streams(directory: str, manifest: dict, vocab_size: int, verify: bool | None = None
                 ) -> tuple[dict[str, TokenStream], np.ndarray]:
    """({split: TokenStream}, train unigram counts) of a finished preparation.

    Sizes are always checked; sha1 sums and ids < vocab_size too when verify is True, or
    (None) when the shards are small enough to read in well under a second. A mismatch is a
    one-line CacheError.
    """
    dtype = np.dtype(manifest["dtype"])
    fix = f"delete {directory} (derived data) to prepare the corpus again"
    total = sum(s["tokens"] for split in SPLITS for s in manifest["shards"][split]) * dtype.itemsize
    verify = total <= VERIFY_ALL_BYTES if verify is None else verify
    streams = {}
    for split in SPLITS:
        shards = manifest["shards"][split]
        paths = [os.path.join(directory, s["file"]) for s in shards]
        for s, path in zip(shards, paths):
            try:
                size = os.path.getsize(path)
            except OSError:
                raise CacheError(f"{path} is missing (the manifest lists it): {fix}") from None
            if size != s["tokens"] * dtype.itemsize:
                raise CacheError(f"{path} holds {size} bytes, the manifest says "
                                 f"{s['tokens'] * dtype.itemsize}: {fix}")
            if verify:
                ids = np.fromfile(path, dtype)
                if hashlib.sha1(ids.tobytes()).hexdigest() != s["sha1"]:
                    raise CacheError(f"{path} fails its checksum: {fix}")
                if ids.size and int(ids.max()) >= vocab_size:
                    raise CacheError(f"{path} holds token id {int(ids.max())} >= the vocab size "
                                     f"{vocab_size}: {fix}")
        streams[split] = TokenStream(paths, [s["tokens"] for s in shards], dtype)
    unigram_path = os.path.join(directory, UNIGRAM)
    try:
        counts = np.load(unigram_path)
    except (OSError, ValueError):
        raise CacheError(f"{unigram_path} is missing or unreadable: {fix}") from None
    if hashlib.sha1(counts.tobytes()).hexdigest() != manifest.get("unigram_sha1"):
        raise CacheError(f"{unigram_path} fails its checksum: {fix}")
    return streams, counts


def shard_path(directory: str, split: str, unit: int) -> str:
    return os.path.join(directory, "tokens", f"{split}-{unit:06d}.bin")
