"""Where documents come from: `config.data.dataset` turned into train and validation text.

Three kinds of source, one result (`Documents`):
  stdlib            the Python standard library, a tfds builder prepared locally (no download)
  tfds:NAME[/CFG]   any tfds dataset already prepared under tfds_data_dir (never downloaded here)
  text:GLOB         plain UTF-8 files, one document each

Text that is not UTF-8 (a latin-1 file, a binary one, a tfds record holding such bytes) is
refused in one line naming the file or record and the byte, before any tokenizer work: read
lossily it would train on U+FFFD unnoticed. data.decode_errors=replace opts in to that, and
the log counts what was replaced.

All get the same light cleaning: newlines normalised to "\\n", whitespace-only documents and
exact duplicates (keep the first; train is read before validation, so a validation document
that repeats a training one is dropped) removed. tensorflow_datasets is imported only for the
tfds-backed sources, so a machine can train on text: data without it.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator

from llmjax.config import DataConfig

MIN_FILES_FOR_HASH_SPLIT = 10
_READ_CHUNK = 1024  # records fetched per array_record read


def is_validation(key: str, val_fraction: float) -> bool:
    """Stable per-document split: sha1(key) mod 1000 < val_fraction * 1000."""
    h = int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % 1000
    return h < val_fraction * 1000


@dataclasses.dataclass
class Documents:
    """Cleaned documents of each split and counts of what cleaning did."""
    train: list[str]
    val: list[str]
    stats: dict


def load_documents(cfg: DataConfig, log: Callable[[str], None] = print) -> Documents:
    """Read, clean, split (text:) and cap (max_train_chars) the corpus named by cfg.dataset."""
    spec = cfg.dataset
    counts = {"documents_read": 0, "empty_dropped": 0, "duplicates_dropped": 0,
              "train_capped": False}
    seen: set[bytes] = set()
    lossy = {"read": 0, "replaced": 0, "with_replacements": 0}  # decode_errors=replace's count
    if spec == "stdlib" or spec.startswith("tfds:"):
        builder, train_split, eval_split, key = _open_tfds(cfg)
        train = _cap(_clean(_read_split(builder, train_split, key, cfg.decode_errors, lossy), seen,
                            counts), cfg.max_train_chars, counts)
        val = [t for _, t in _clean(_read_split(builder, eval_split, key, cfg.decode_errors,
                                                lossy), seen, counts)]
        if not val:
            raise ValueError(f"data.dataset={spec!r}: the evaluation split {eval_split!r} has no "
                             "text: pick another with config.data.eval_split")
    elif spec.startswith("text:"):
        docs = list(_clean(_read_files(spec, cfg.decode_errors, lossy), seen, counts))
        if not docs:
            raise ValueError(f"data.dataset={spec!r}: every matched file is empty or blank: "
                             "the corpus is empty")
        train_docs, val = _split_text(docs, cfg.val_fraction, spec, log)
        train = _cap(iter(train_docs), cfg.max_train_chars, counts)
    else:
        raise ValueError(f"data.dataset={spec!r}: must be stdlib, tfds:NAME[/CONFIG] or text:GLOB")
    if not train:
        raise ValueError(f"data.dataset={spec!r}: the training split has no text: check the "
                         "dataset and config.data.train_split")
    if cfg.decode_errors == "replace":
        unit = "files" if spec.startswith("text:") else "records"
        log(f"data {spec}: decode_errors=replace: {lossy['replaced']} undecodable byte sequences "
            f"read as U+FFFD in {lossy['with_replacements']} of {lossy['read']} {unit}")
    stats = dict(counts, train_documents=len(train), val_documents=len(val),
                 train_chars=sum(map(len, train)), val_chars=sum(map(len, val)))
    log(f"data {spec}: read {stats['documents_read']} documents, dropped "
        f"{stats['empty_dropped']} empty and {stats['duplicates_dropped']} duplicate; "
        f"train {stats['train_documents']} docs / {stats['train_chars']:,} chars, "
        f"val {stats['val_documents']} docs / {stats['val_chars']:,} chars"
        + (f" (train capped at {cfg.max_train_chars:,} chars)" if counts.get("train_capped") else ""))
    return Documents(train=train, val=val, stats=stats)


# ---------------------------------------------------------------- cleaning


def _clean(docs: Iterable[tuple[str, str]], seen: set[bytes],
           counts: dict) -> Iterator[tuple[str, str]]:
    """Normalise newlines; drop blank documents and exact repeats of any seen before."""
    for key, text in docs:
        counts["documents_read"] += 1
        text = text.replace("\r\n", "\n").replace("\r", "\n")
        if not text.strip():
            counts["empty_dropped"] += 1
            continue
        digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        if digest in seen:
            counts["duplicates_dropped"] += 1
            continue
        seen.add(digest)
        yield key, text


def _cap(docs: Iterator[tuple[str, str]], max_chars: int, counts: dict) -> list[str]:
    """All texts, or (max_chars > 0) texts up to max_chars, truncating the last; stops reading."""
    out, total = [], 0
    for _, text in docs:
        if max_chars and total + len(text) >= max_chars:
            out.append(text[:max_chars - total])
            counts["train_capped"] = True
            break
        out.append(text)
        total += len(text)
    return out


# ---------------------------------------------------------------- tfds (stdlib included)


def _open_tfds(cfg: DataConfig):
    """(prepared builder, train split, eval split, text feature); one-line errors otherwise."""
    if cfg.dataset == "stdlib":
        from llmjax.data import stdlib_corpus
        builder = stdlib_corpus.prepare_builder(cfg.tfds_data_dir or None, cfg.val_fraction)
        return builder, "train", "validation", "text"

    builder = open_prepared(cfg.dataset[len("tfds:"):], cfg.tfds_data_dir,
                            f"data.dataset={cfg.dataset!r}")
    eval_split = cfg.eval_split or default_eval_split(builder)
    check_split(builder, cfg.train_split, "config.data.train_split")
    check_split(builder, eval_split, "config.data.eval_split")
    features = builder.info.features
    if cfg.text_key not in features:
        raise ValueError(f"config.data.text_key={cfg.text_key!r}: {dataset_name(builder)} has no "
                         f"such feature; available: {', '.join(features.keys())}")
    return builder, cfg.train_split, eval_split, cfg.text_key


def open_prepared(name: str, data_dir: str, what: str):
    """The tfds builder of NAME[/CONFIG] prepared under data_dir ('' = tfds default).

    llmjax never downloads, so an unknown or unprepared dataset is a one-line ValueError that
    starts with `what` (the setting that named it) and gives the `tfds build` command to run.
    """
    import tensorflow_datasets as tfds

    where = data_dir or str(tfds.core.constants.DATA_DIR)
    build = (f"run `tfds build {name} --data_dir {where} --file_format=array_record` on a "
             "machine with internet (llmjax never downloads)")
    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except Exception as e:  # noqa: BLE001  DatasetNotFoundError and friends: not on disk
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"{what}: tfds cannot find it under {where} "
                         f"({first}): check the name, or {build}") from None
    if not builder.is_prepared():
        raise ValueError(f"{what}: not prepared under {where}: {build}")
    return builder


def dataset_name(builder) -> str:
    """NAME[/CONFIG] of a tfds builder, as the user spells it (full_name adds the version)."""
    return builder.info.full_name.rsplit("/", 1)[0]


def default_eval_split(builder) -> str:
    """'validation' where the dataset has one, else 'test'."""
    return "validation" if "validation" in builder.info.splits else "test"


def check_split(builder, split: str, what: str) -> None:
    """One-line ValueError naming `what` when `split` (slicing like train[:10%] allowed) is absent."""
    splits = list(builder.info.splits.keys())
    if split.split("[")[0] not in splits:
        raise ValueError(f"{what}={split!r}: {dataset_name(builder)} has no such split; "
                         f"available: {', '.join(splits)}")


def read_records(builder, split: str, limit: int = 0) -> Iterator[tuple[int, dict]]:
    """(index, record) of one split in order, lazily (limit > 0: the first `limit` only).

    array_record is read with `as_data_source` (no TensorFlow); any other format needs tf.data.
    """
    from tensorflow_datasets.core import file_adapters

    fmt = file_adapters.FileFormat.ARRAY_RECORD
    formats = [builder.info.file_format, *getattr(builder.info, "alternative_file_formats", [])]
    if fmt in formats:
        source = builder.as_data_source(split=split, file_format=fmt)
        get_many = getattr(source, "__getitems__", None)
        stop = min(len(source), limit) if limit else len(source)
        for start in range(0, stop, _READ_CHUNK):
            idx = list(range(start, min(start + _READ_CHUNK, stop)))
            records = get_many(idx) if get_many else [source[i] for i in idx]
            yield from zip(idx, records)
        return
    try:
        import tensorflow  # noqa: F401  (tf.data reads tfrecord)
    except ImportError:
        name = builder.info.full_name
        raise ValueError(f"tfds dataset {name} is stored as {builder.info.file_format.value}, "
                         "which needs TensorFlow to read: pip install tensorflow, or re-prepare "
                         f"it with `tfds build {builder.name} --file_format=array_record`") from None
    import tensorflow_datasets as tfds
    ds = builder.as_dataset(split=split, shuffle_files=False)
    yield from enumerate(tfds.as_numpy(ds.take(limit) if limit else ds))


def decode_utf8(data: bytes, errors: str, where: str, fix: str, lossy: dict) -> str:
    """data as UTF-8. strict: a one-line ValueError naming `where`, the first bad byte and its
    offset, and `fix`. replace: U+FFFD for each bad sequence, counted in lossy (read,
    replaced, with_replacements); a U+FFFD the data spells validly (EF BF BD) is not counted."""
    lossy["read"] += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors != "replace":
            raise ValueError(f"{where} is not UTF-8 at byte {e.start} (0x{data[e.start]:02x}): "
                             f"{fix}") from None
    text = data.decode("utf-8", errors="replace")
    lossy["replaced"] += text.count("\ufffd") - data.count(b"\xef\xbf\xbd")
    lossy["with_replacements"] += 1
    return text


def as_text(value, what: str) -> str:
    """A Text feature's value as str (array_record gives str, tf.data bytes)."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        return value
    raise ValueError(f"{what}: the feature holds {type(value).__name__}, not text: name a Text "
                     "feature")


def _read_split(builder, split: str, key: str, errors: str,
                lossy: dict) -> Iterator[tuple[str, str]]:
    """(index, text) of one split, lazily; a Text feature's bytes decoded as decode_utf8 says
    (tfds stores the bytes a builder gave it, UTF-8 or not)."""
    what = f"config.data.text_key={key!r} of {builder.name}"
    fix = ("set --config.data.decode_errors=replace to read it with U+FFFD for the bad bytes, "
           "or train on another dataset")
    for i, record in read_records(builder, split):
        value = record[key]
        if isinstance(value, bytes):
            where = f"{dataset_name(builder)} {split}[{i}] feature {key!r}"
            yield str(i), decode_utf8(value, errors, where, fix, lossy)
        else:
            yield str(i), as_text(value, what)


# ---------------------------------------------------------------- text: files


def glob_root(pattern: str) -> str:
    """The directory part of a glob before its first wildcard: paths are hashed relative to it."""
    parts = pattern.split(os.sep)
    fixed = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return os.sep.join(fixed) or "."


def _read_files(spec: str, errors: str, lossy: dict) -> Iterator[tuple[str, str]]:
    """(path under the glob's root, text) of each matched file; decoded as decode_utf8 says."""
    pattern = os.path.expanduser(spec[len("text:"):])
    files = sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))
    if not files:
        raise ValueError(f"data.dataset={spec!r}: the glob matches no files: check the path "
                         "(quote it in the shell)")
    root = glob_root(pattern)
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        fix = (f"convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8), or set "
               "--config.data.decode_errors=replace to read it with U+FFFD for the bad bytes")
        yield (os.path.relpath(path, root).replace(os.sep, "/"),
               decode_utf8(data, errors, path, fix, lossy))


def _split_text(docs: list[tuple[str, str]], val_fraction: float, spec: str,
                log: Callable[[str], None]) -> tuple[list[tuple[str, str]], list[str]]:
    """By file hash for 10+ documents, else the last val_fraction of the characters."""
    if len(docs) >= MIN_FILES_FOR_HASH_SPLIT:
        train = [(k, t) for k, t in docs if not is_validation(k, val_fraction)]
        val = [t for k, t in docs if is_validation(k, val_fraction)]
        if val and train:
            return train, val
        log(f"data {spec}: the by-file split of {len(docs)} files held out "
            f"{len(val)} files; holding out the last {val_fraction:.0%} of the text instead")
    total = sum(len(t) for _, t in docs)
    cut = int(total * (1 - val_fraction))  # nanoGPT: data[:int(n*0.9)], data[int(n*0.9):]
    train, val, pos = [], [], 0
    for key, text in docs:
        head = text[:max(0, cut - pos)]
        tail = text[len(head):]
        if head:
            train.append((key, head))
        if tail:
            val.append(tail)
        pos += len(text)
    if not val:
        raise ValueError(f"data.dataset={spec!r}: the validation split is empty ({total} chars, "
                         f"val_fraction={val_fraction}): raise val_fraction or add text")
    if not train:
        raise ValueError(f"data.dataset={spec!r}: the training split is empty ({total} chars, "
                         f"val_fraction={val_fraction}): lower val_fraction or add text")
    return train, val
