"""Tokenized fine-tuning examples on disk: written once while the records stream past, then
memory-mapped, so a classification or seq2seq run's memory does not grow with its dataset.

A cache directory (a run's <workdir>/data/examples) holds, per split (train, eval) and per text
field (classification: a, and b for text pairs; seq2seq: source, target):

  {split}.{field}.bin            token ids of every example back to back (token_cache.token_dtype)
  {split}.{field}.offsets.npy    int64 (N + 1,): example i is bin[offsets[i]:offsets[i + 1]]
  {split}.{field}.text.bin       the UTF-8 text of the split's first examples (as many as the
  {split}.{field}.text.offsets.npy  builder was asked to keep: what reports and baselines show)
  {split}.labels.npy             int32 (N,) class ids, where the examples have labels

With `encode` a task writes its own columns instead of one token field per text: per chunk of
records it returns column -> one integer array per record (token ids aligned with per-token
tags, answer positions, ...), stored as {split}.{column}.bin like the token fields, each column
with its arrays' dtype (manifest "dtypes"); the records' texts are still what keep_text keeps.
  manifest.json                  written last: the examples per split, the size and sha1 of every
                                 file, the key it was built from (the dataset's settings and the
                                 tokenizer's fingerprint) and what the dataset reported (stats)

A directory without a manifest (a build that was killed) or built from another key is built
again; a file whose size or checksum disagrees with the manifest is a one-line CacheError (and
`load_or_build` builds it again). Records are encoded CHUNK at a time with the tokenizer's batch
encode and appended to the files: building holds one chunk of texts and 8 bytes of offsets per
example, whatever the dataset's size.

Shape key: N examples of a split.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence

import numpy as np

from llmjax.data import token_cache
from llmjax.data.atomic import atomic_write, write_error
from llmjax.data.preparation import BottomK, content_hash
from llmjax.data.token_cache import CacheError
from llmjax.data.tokenizers import Tokenizer

FORMAT = 1  # bump when the files' meaning changes
MANIFEST = "manifest.json"
SPLITS = ("train", "eval")
CHUNK = 4096  # examples encoded at once
Record = tuple[str, Sequence[str], "int | None"]  # (split, one text per field, label or None)
# A task's own columns for a chunk of records: (tokenizer, records) -> column -> an array per record
Encode = Callable[[Tokenizer, Sequence[Record]], "dict[str, Sequence[np.ndarray]]"]


class Ragged:
    """Sequences of varying length as one flat array and int64 offsets (N + 1,): r[i], len(r),
    r.lengths(), r.gather(indices). The arrays may be memory maps."""

    def __init__(self, flat: np.ndarray, offsets: np.ndarray):
        self.flat, self.offsets = flat, offsets

    @classmethod
    def from_arrays(cls, seqs: Sequence[Sequence[int]], dtype=np.int32) -> Ragged:
        """In memory, from a list of sequences (tests, small sets)."""
        lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
        flat = np.concatenate([np.asarray(s, dtype) for s in seqs]) if len(seqs) else np.zeros(0, dtype)
        return cls(flat.astype(dtype, copy=False), np.concatenate([[0], np.cumsum(lengths)]))

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.flat[int(self.offsets[i]):int(self.offsets[i + 1])])

    def gather(self, idx: Sequence[int] | np.ndarray) -> list[np.ndarray]:
        """The sequences at idx (a batch's examples)."""
        return [self[i] for i in np.asarray(idx, np.int64).tolist()]

    def lengths(self) -> np.ndarray:
        """int64 (N,) length of each sequence."""
        return np.diff(np.asarray(self.offsets, np.int64))


def tokenizer_sample(texts: Iterable[tuple[int, str]], budget: int) -> list[str]:
    """A uniform random sample of texts up to budget characters (the preparation's bottom-k by
    content hash, each text cut to budget), in the texts' own order: texts are (order, text)
    with order < 2**40. When every text fits, the sample is all of them, in order."""
    sample = BottomK(budget)
    for order, text in texts:
        digest = int.from_bytes(content_hash(text)[:8], "little")
        sample.add(digest << 40 | order, text[:budget])
    return [t for _, t in sorted(sample.items(), key=lambda item: item[0] & ((1 << 40) - 1))]


# ---------------------------------------------------------------- writing


class _Column:
    """One ragged file being appended to: data, its sha1, and the offsets so far."""

    def __init__(self, directory: str, name: str, dtype: np.dtype):
        self.name, self.dtype = name, np.dtype(dtype)
        self.path = os.path.join(directory, f"{name}.bin")
        self.sha, self.size, self.end = hashlib.sha1(), 0, 0
        self.lengths: list[np.ndarray] = []
        try:
            self.file = open(self.path, "wb")
        except OSError as e:
            raise _write_failed(self.path, e) from e

    def append(self, seqs: Sequence[np.ndarray]) -> None:
        lengths = np.fromiter(map(len, seqs), np.int64, len(seqs))
        data = (np.concatenate(seqs) if len(seqs) else np.zeros(0)).astype(self.dtype).tobytes()
        try:
            self.file.write(data)
        except OSError as e:
            raise _write_failed(self.path, e) from e
        self.sha.update(data)
        self.size += len(data)
        self.lengths.append(lengths)

    def close(self, directory: str) -> dict[str, dict]:
        """Flush the data, write the offsets; the manifest entries of both files."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
        except OSError as e:
            raise _write_failed(self.path, e) from e
        finally:
            self.file.close()
        lengths = np.concatenate(self.lengths) if self.lengths else np.zeros(0, np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        off_path = os.path.join(directory, f"{self.name}.offsets.npy")
        atomic_write(off_path, lambda f: np.save(f, offsets))
        return {f"{self.name}.bin": {"bytes": self.size, "sha1": self.sha.hexdigest()},
                f"{self.name}.offsets.npy": _entry(off_path)}


def _text_name(fields: Sequence[str], j: int, encode: Encode | None) -> str:
    """The name a record's j-th text is kept under: its field's, or text{j} beside encode's columns."""
    return fields[j] if encode is None else f"text{j}"


def _entry(path: str) -> dict:
    return {"bytes": os.path.getsize(path), "sha1": token_cache.file_sha1(path)}


def _write_failed(path: str, e: OSError):
    return write_error(f"cannot write {path}", e, "make it writable, then run the same command again")


def build(directory: str, key: dict, tok: Tokenizer, records: Iterable[Record],
          fields: Sequence[str], labelled: bool, meta: Callable[[], dict],
          keep_text: dict[str, int] | None = None,
          transforms: dict[str, Callable[[str], str]] | None = None,
          chunk: int = CHUNK, encode: Encode | None = None) -> ExampleCache:
    """Encode records (train's before eval's) into directory, then write the manifest.

    key: what the examples are built from (the manifest's "key"); meta(): JSON-able facts known
    once the records are read (the dataset's stats); keep_text: per split, how many first
    examples keep their text; transforms: per field, how a text is read before tokenizing
    (the stored text stays as it was); encode: the task's own columns (named by fields) instead
    of tokenizing each text (the module docstring).
    """
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):  # the manifest first: never one beside half-written files
        if name == MANIFEST or name.endswith((".bin", ".npy")) or ".tmp" in name:
            os.remove(os.path.join(directory, name))
    keep_text, transforms = keep_text or {}, transforms or {}
    dtype = token_cache.token_dtype(tok.vocab_size)
    dtypes: dict[str, str] = {}  # encode's columns: the dtype each was written with
    writers: dict[str, dict] = {}
    pending: dict[str, list] = {}
    counts = dict.fromkeys(SPLITS, 0)

    def open_split(split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: examples are in splits {', '.join(SPLITS)}")
        if split in writers:
            raise ValueError(f"split {split!r} read again after another split: give each "
                             "split's records together")
        texts = range(len(fields)) if encode is None else range(len(first_texts))
        writers[split] = {"tokens": {} if encode else {f: _Column(directory, f"{split}.{f}", dtype)
                                                        for f in fields},
                          "text": {j: _Column(directory, f"{split}.{_text_name(fields, j, encode)}.text",
                                              np.uint8) for j in texts} if keep_text.get(split) else {},
                          "labels": [] if labelled else None}
        pending[split] = []

    def flush(split: str) -> None:
        rows, w = pending[split], writers[split]
        if not rows:
            return
        if encode is not None:
            columns = encode(tok, rows)
            if set(columns) != set(fields):
                raise ValueError(f"encode returned the columns {sorted(columns)}, fields are {list(fields)}")
            for f in fields:
                if f not in w["tokens"]:
                    dtypes.setdefault(f, np.asarray(columns[f][0]).dtype.name if len(columns[f]) else "int32")
                    w["tokens"][f] = _Column(directory, f"{split}.{f}", np.dtype(dtypes[f]))
                w["tokens"][f].append([np.asarray(a) for a in columns[f]])
        for j, column in w["text"].items():
            texts = [r[1][j] for r in rows]
            room = keep_text.get(split, 0) - sum(map(len, column.lengths))
            if room > 0:
                column.append([np.frombuffer(t.encode("utf-8", "surrogatepass"), np.uint8)
                               for t in texts[:room]])
        for j, f in enumerate(fields if encode is None else ()):
            read = transforms.get(f)
            texts = [r[1][j] for r in rows]
            w["tokens"][f].append(tok.encode_batch([read(t) for t in texts] if read else texts))
        if labelled:
            w["labels"].append(np.asarray([r[2] for r in rows], np.int32))
        pending[split] = []

    current = None
    first_texts: Sequence[str] = ()
    for record in records:
        split = record[0]
        first_texts = first_texts or record[1]
        if split != current:
            open_split(split)
            current = split
        if encode is None and len(record[1]) != len(fields):
            raise ValueError(f"a {split} record has {len(record[1])} texts, fields are {fields}")
        pending[split].append(record)
        counts[split] += 1
        if len(pending[split]) >= chunk:
            flush(split)
    files: dict[str, dict] = {}
    for split in SPLITS:
        if split not in writers:
            open_split(split)  # an empty split: empty files, the task says whether that is fine
        flush(split)
        w = writers[split]
        for f in fields if encode else ():  # a column no record reached (an empty split)
            if f not in w["tokens"]:
                w["tokens"][f] = _Column(directory, f"{split}.{f}", np.dtype(dtypes.get(f, "int32")))
        for column in [*w["tokens"].values(), *w["text"].values()]:
            files.update(column.close(directory))
        if labelled:
            path = os.path.join(directory, f"{split}.labels.npy")
            labels = np.concatenate(w["labels"]) if w["labels"] else np.zeros(0, np.int32)
            atomic_write(path, lambda f, labels=labels: np.save(f, labels))
            files[f"{split}.labels.npy"] = _entry(path)
    manifest = {"format": FORMAT, "key": key, "fields": list(fields), "labelled": labelled,
                "dtype": dtype.name, "dtypes": dtypes, "files": files, "meta": meta(),
                "examples": counts,
                "text_examples": {s: min(counts[s], keep_text.get(s, 0)) for s in SPLITS}}
    atomic_write(os.path.join(directory, MANIFEST),
                 lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    return ExampleCache(directory, manifest, verify=False)


# ---------------------------------------------------------------- reading


def read_manifest(directory: str) -> dict | None:
    """The manifest of a finished build, or None (none yet, another format, unreadable)."""
    try:
        with open(os.path.join(directory, MANIFEST), encoding="utf-8") as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == FORMAT else None


class ExampleCache:
    """A finished cache, memory-mapped: `field(split, name)` is a Ragged of token ids,
    `labels(split)` int32 (N,), `texts(split, name, n)` the first n kept texts, `meta` what the
    dataset reported."""

    def __init__(self, directory: str, manifest: dict, verify: bool | None = None):
        self.directory, self.manifest = directory, manifest
        self.meta: dict = manifest["meta"]
        self.fields: tuple[str, ...] = tuple(manifest["fields"])
        self.dtype = np.dtype(manifest["dtype"])
        fix = f"delete {directory} (derived data) to build it again"
        total = sum(e["bytes"] for e in manifest["files"].values())
        verify = total <= token_cache.VERIFY_ALL_BYTES if verify is None else verify
        for name, entry in manifest["files"].items():
            path = os.path.join(directory, name)
            try:
                size = os.path.getsize(path)
            except OSError:
                raise CacheError(f"{path} is missing (the manifest lists it): {fix}") from None
            if size != entry["bytes"]:
                raise CacheError(f"{path} holds {size} bytes, the manifest says {entry['bytes']}: {fix}")
            if verify and token_cache.file_sha1(path) != entry["sha1"]:
                raise CacheError(f"{path} fails its checksum: {fix}")

    def num_examples(self, split: str) -> int:
        return int(self.manifest["examples"][split])

    def _ragged(self, name: str, dtype: np.dtype) -> Ragged:
        path = os.path.join(self.directory, f"{name}.bin")
        size = self.manifest["files"][f"{name}.bin"]["bytes"]
        flat = np.memmap(path, dtype, mode="r") if size else np.zeros(0, dtype)
        return Ragged(flat, np.load(os.path.join(self.directory, f"{name}.offsets.npy"), mmap_mode="r"))

    def field(self, split: str, name: str) -> Ragged:
        dtype = self.manifest.get("dtypes", {}).get(name)
        return self._ragged(f"{split}.{name}", np.dtype(dtype) if dtype else self.dtype)

    def labels(self, split: str) -> np.ndarray:
        return np.load(os.path.join(self.directory, f"{split}.labels.npy"), mmap_mode="r")

    def texts(self, split: str, name: str, n: int) -> list[str]:
        """The first n texts of a field (at most the kept ones), as read from the dataset."""
        n = min(n, int(self.manifest["text_examples"][split]))
        if n <= 0:
            return []
        r = self._ragged(f"{split}.{name}.text", np.dtype(np.uint8))
        return [r[i].tobytes().decode("utf-8", "surrogatepass") for i in range(n)]


def load_or_build(directory: str, key: dict, tok: Tokenizer, records: Callable[[], Iterable[Record]],
                  log: Callable[[str], None] = print, **build_args) -> ExampleCache:
    """The cache in directory when it was built from key with tok, else built from records()
    (build's other arguments in build_args). key gets the format and tok's fingerprint."""
    key = dict(key, format=FORMAT, tokenizer=tok.fingerprint())
    manifest = read_manifest(directory)
    if manifest is not None and manifest.get("key") == key:
        try:
            cache = ExampleCache(directory, manifest)
            log(f"data: reusing the tokenized examples in {directory}")
            return cache
        except CacheError as e:
            log(f"data: {e}; building them again")
    elif manifest is not None:
        old = manifest.get("key", {})
        changes = ", ".join(f"{k}: {old.get(k)!r} -> {key.get(k)!r}"
                            for k in sorted(old.keys() | key.keys()) if old.get(k) != key.get(k))
        log(f"data: the examples in {directory} were built from other settings ({changes}); "
            "building them again")
    return build(directory, key, tok, records(), **build_args)
