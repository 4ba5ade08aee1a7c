"""Where documents come from: `config.data.dataset` read unit by unit as cleaned text.

The kinds of source (config.DATASET_KINDS):
  stdlib            the Python standard library, a tfds builder prepared locally (no download)
  tfds:NAME[/CFG]   any tfds dataset already prepared under tfds_data_dir (never downloaded here)
  text:GLOB         plain UTF-8 files, one document each
  jsonl:GLOB        JSON Lines (.jsonl, .jsonl.gz, .jsonl.zst), the text under data.text_key
  parquet:GLOB      Parquet files, the text in column data.text_key
  hf_disk:DIR       a Hugging Face `datasets` Dataset or DatasetDict from save_to_disk (Arrow
                    stream files, read with pyarrow; the `datasets` package is not needed)

`list_units` cuts a corpus into work units from metadata alone (globs, sizes, Parquet footers,
Arrow batch headers, tfds split sizes); `read_unit` streams one unit's documents. Workers of
llmjax.data.preparation each read units this way, so a corpus of any size is prepared in
parallel and a worker's memory is bounded by one document (or one Arrow batch), not the corpus.
Deduplication and max_train_chars need the whole corpus, so they are preparation's, not these.

Text that is not UTF-8 (a latin-1 file, a binary one, a tfds record holding such bytes) is
refused in one line naming the file or record and the byte, before any tokenizer work: read
lossily it would train on U+FFFD unnoticed. data.decode_errors=replace opts in to that, and
read_unit counts what was replaced.

Cleaning: newlines normalised to "\\n" and whitespace-only documents dropped. tensorflow_datasets
is imported only for the tfds-backed sources, so a machine can train on other data without it.
"""
from __future__ import annotations

import dataclasses
import glob
import hashlib
import os
from collections.abc import Callable, Iterator, Sequence

from llmjax.config import DataConfig, UserError, dataset_files, dataset_kinds_hint
from llmjax.data import holdout

MIN_FILES_FOR_HASH_SPLIT = 10
_READ_CHUNK = 1024  # records fetched per array_record read


def is_validation(key: str, val_fraction: float) -> bool:
    """Stable per-document split: sha1(key) mod 1000 < val_fraction * 1000."""
    return split_bucket(key) < val_fraction * 1000


def split_bucket(key: str) -> int:
    """sha1(key) mod 1000: the band of the stable split (is_validation; pairs' dev band)."""
    return int.from_bytes(hashlib.sha1(key.encode("utf-8")).digest()[:8], "big") % 1000


# ---------------------------------------------------------------- cleaning


def _newlines(text: str) -> str:
    """CRLF and CR as LF."""
    return text.replace("\r\n", "\n").replace("\r", "\n")


# ---------------------------------------------------------------- tfds (stdlib included)


def _open_tfds(cfg: DataConfig):
    """(prepared builder, train split, eval split, text feature); one-line errors otherwise."""
    if cfg.dataset == "stdlib":
        from llmjax.data import stdlib_corpus
        builder = stdlib_corpus.prepare_builder(cfg.tfds_data_dir or None, cfg.val_fraction,
                                                holdout.parse(cfg.holdout))
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


def read_records(builder, split: str, limit: int = 0, start: int = 0,
                 stop: int = -1) -> Iterator[tuple[int, dict]]:
    """(index, record) of one split in order, lazily: records [start, stop) (stop -1: to the
    end; limit > 0: the first `limit` of them only).

    array_record is read with `as_data_source` (no TensorFlow); any other format needs tf.data.
    """
    from tensorflow_datasets.core import file_adapters

    fmt = file_adapters.FileFormat.ARRAY_RECORD
    formats = [builder.info.file_format, *getattr(builder.info, "alternative_file_formats", [])]
    if fmt in formats:
        source = builder.as_data_source(split=split, file_format=fmt)
        get_many = getattr(source, "__getitems__", None)
        end = len(source) if stop < 0 else min(stop, len(source))
        end = min(end, start + limit) if limit else end
        for first in range(start, end, _READ_CHUNK):
            idx = list(range(first, min(first + _READ_CHUNK, end)))
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
    ds = builder.as_dataset(split=split, shuffle_files=False).skip(start)
    count = -1 if stop < 0 else stop - start
    count = min(count, limit) if limit and count >= 0 else (limit or count)
    yield from enumerate(tfds.as_numpy(ds.take(count)), start=start)


def decode_utf8(data: bytes, errors: str, where: str, fix: str, lossy: dict,
                offset: int = 0) -> str:
    """data as UTF-8. strict: a one-line ValueError naming `where`, the first bad byte and its
    offset (plus `offset`, where data starts in its file), and `fix`. replace: U+FFFD for each
    bad sequence, counted in lossy (read, replaced, with_replacements); a U+FFFD the data
    spells validly (EF BF BD) is not counted."""
    lossy["read"] += 1
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors != "replace":
            raise ValueError(f"{where} is not UTF-8 at byte {offset + e.start} "
                             f"(0x{data[e.start]:02x}): "
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


_TFDS_FIX = ("set --config.data.decode_errors=replace to read it with U+FFFD for the bad bytes, "
             "or train on another dataset")


def _split_texts(builder, split: str, key: str, decode: Callable[[bytes, str], str],
                 start: int = 0, stop: int = -1) -> Iterator[tuple[int, str]]:
    """(index, text) of records [start, stop) of one split; bytes go through decode(data, where)."""
    what = f"config.data.text_key={key!r} of {builder.name}"
    for i, record in read_records(builder, split, start=start, stop=stop):
        value = record[key]
        if isinstance(value, bytes):
            yield i, decode(value, f"{dataset_name(builder)} {split}[{i}] feature {key!r}")
        else:
            yield i, as_text(value, what)


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


def files_digest(paths: Sequence[str]) -> str:
    """sha1 of the files' paths, sizes and modification times: what changes when files are
    added, removed or edited (decides whether what was derived from them still holds)."""
    listing = "\n".join(f"{f}\t{os.path.getsize(f)}\t{os.stat(f).st_mtime_ns}" for f in paths)
    return hashlib.sha1(listing.encode()).hexdigest()


def _file_fix(path: str) -> str:
    """What to do about a file that is not UTF-8."""
    return (f"convert it to UTF-8 (e.g. iconv -f LATIN1 -t UTF-8 {path} > {path}.utf8), or set "
            "--config.data.decode_errors=replace to read it with U+FFFD for the bad bytes")


# ---------------------------------------------------------------- work units (streamed reading)


@dataclasses.dataclass(frozen=True)
class Unit:
    """A piece of a source one worker reads start to end, in order (picklable)."""
    index: int  # position in corpus order (pre-split sources: every train unit before every val unit)
    kind: str  # "text" | "jsonl" | "parquet" | "arrow" | "tfds"
    path: str  # the file; for tfds/stdlib the dataset NAME[/CONFIG] ("stdlib" for the embedded corpus)
    start: int = 0  # text and uncompressed jsonl: byte offset; parquet: first row group; arrow/tfds: first record
    stop: int = -1  # exclusive end in the same unit (-1: to the end)
    split: str = ""  # "train" | "val" where the source decides it; "" = the caller splits by content hash
    size: int = 0  # bytes it covers (estimate): for balancing and progress


def list_units(cfg: DataConfig, target_bytes: int = 64 << 20) -> list[Unit]:
    """The corpus as units of about target_bytes, cheaply: globs, stats, Parquet footers, Arrow
    and tfds metadata (no document is read). Bad input is a one-line UserError."""
    spec = cfg.dataset
    kind = spec.partition(":")[0]
    if spec == "stdlib" or kind == "tfds":
        units = _tfds_units(cfg, target_bytes)
    elif kind == "text":
        units = _text_units(cfg, target_bytes)
    elif kind == "jsonl":
        units = _jsonl_units(cfg, target_bytes)
    elif kind == "parquet":
        units = _parquet_units(cfg, target_bytes)
    elif kind == "hf_disk":
        units = _hf_disk_units(cfg, target_bytes)
    else:
        raise UserError(f"data.dataset={spec!r}: {dataset_kinds_hint()}")
    units.sort(key=lambda u: u.split == "val")  # stable: train (or unsplit) first, in order
    return [dataclasses.replace(u, index=i) for i, u in enumerate(units)]


def read_unit(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    """(document key, cleaned text) of each document of the unit, lazily and in order, holding
    one document (or one Parquet/Arrow batch) at a time. Newlines become "\\n"; blank documents
    are skipped. counts gains documents_read and empty_dropped, and with decode_errors=replace
    replaced and with_replacements. A file that vanished, is truncated or holds a bad record is a
    one-line UserError naming it."""
    counts.setdefault("documents_read", 0)
    counts.setdefault("empty_dropped", 0)
    for key, text in _UNIT_READERS[unit.kind](unit, cfg, counts):
        counts["documents_read"] += 1
        text = _newlines(text)
        if not text.strip():
            counts["empty_dropped"] += 1
            continue
        yield key, text


def _decode(data: bytes, cfg: DataConfig, where: str, fix: str, counts: dict,
            offset: int = 0) -> str:
    """decode_utf8 with its replace counts added to counts (and no count on the fast path)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        lossy = {"read": 0, "replaced": 0, "with_replacements": 0}
        try:
            text = decode_utf8(data, cfg.decode_errors, where, fix, lossy, offset)
        except ValueError as e:
            raise UserError(str(e)) from None
    for k in ("replaced", "with_replacements"):
        counts[k] = counts.get(k, 0) + lossy[k]
    return text


def _why(e: BaseException) -> str:
    """An exception's cause in one line."""
    text = getattr(e, "strerror", None) or str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _unreadable(path: str, e: BaseException) -> UserError:
    return UserError(f"{path}: cannot read it ({_why(e)}): check that the file exists and is "
                     "readable (list the corpus again if it changed)")


def _corrupt(path: str, e: BaseException, where: str) -> UserError:
    return UserError(f"{path} is truncated or corrupt ({_why(e)}) {where}: re-create or "
                     "re-download it, or move it out of the corpus")


def _rel(path: str, cfg: DataConfig) -> str:
    """path relative to the root of cfg.dataset's glob (or hf_disk directory), with "/"."""
    where = os.path.expanduser(cfg.dataset.partition(":")[2])
    root = where if cfg.dataset.startswith("hf_disk:") else glob_root(where)
    return os.path.relpath(path, root).replace(os.sep, "/")


# ---------------------------------------------------------------- text: units


def _text_units(cfg: DataConfig, target: int) -> list[Unit]:
    """Files (a document each) cut at line ends into pieces of about target bytes; split by path
    hash (10+ non-empty files) or at the last val_fraction of the bytes (nanoGPT's tail)."""
    spec, fraction = cfg.dataset, cfg.val_fraction
    files = dataset_files(cfg.dataset)
    sizes = [os.path.getsize(f) for f in files]
    rels = [_rel(f, cfg) for f in files]
    window = max(1, min(target // 2, 1 << 16))
    nonempty = [r for r, s in zip(rels, sizes) if s]
    held_out = {r for r in nonempty if is_validation(r, fraction)}
    by_hash = (len(nonempty) >= MIN_FILES_FOR_HASH_SPLIT and 0 < len(held_out) < len(nonempty))
    total, tail = sum(sizes), -1
    if not by_hash:  # nanoGPT: data[:int(n*0.9)], data[int(n*0.9):], here at a line end near it
        tail, pos = int(total * (1 - fraction)), 0
        for path, size in zip(files, sizes):
            if pos < tail < pos + size:
                tail = pos + _line_end(path, tail - pos, size, window)
                break
            pos += size
        if tail >= total:
            raise UserError(f"data.dataset={spec!r}: the validation split is empty ({total} bytes, "
                            f"val_fraction={fraction}): raise val_fraction or add text")
        if tail <= 0:
            raise UserError(f"data.dataset={spec!r}: the training split is empty ({total} bytes, "
                            f"val_fraction={fraction}): lower val_fraction or add text")
    units, pos = [], 0
    for path, rel, size in zip(files, rels, sizes):
        cuts = {_line_end(path, c, size, window) for c in range(target, size, target)}
        if pos < tail < pos + size:
            cuts.add(tail - pos)
        bounds = [0, *sorted(c for c in cuts if 0 < c < size), size]
        for a, b in zip(bounds, bounds[1:]):
            split = (("val" if rel in held_out else "train") if by_hash
                     else "train" if pos + a < tail else "val")
            whole = a == 0 and b == size
            units.append(Unit(0, "text", path, a, -1 if whole else b, split, b - a))
        pos += size
    return units


def _line_end(path: str, c: int, size: int, window: int) -> int:
    """The end of the line nearest byte c within window bytes (strictly inside the file), else c
    moved to the next UTF-8 character start."""
    lo = max(0, c - window)
    try:
        with open(path, "rb") as f:
            f.seek(lo)
            buf = f.read(min(size, c + window) - lo)
    except OSError as e:
        raise _unreadable(path, e) from None
    before = buf.rfind(b"\n", 0, c - lo)  # a line ending at or before c
    after = buf.find(b"\n", c - lo)
    ends = [lo + i + 1 for i in (before, after) if i >= 0 and 0 < lo + i + 1 < size]
    if ends:
        return min(ends, key=lambda e: abs(e - c))
    while c < size and c - lo < len(buf) and buf[c - lo] & 0xC0 == 0x80:  # a continuation byte
        c += 1
    return c


def _read_text(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    try:
        with open(unit.path, "rb") as f:
            f.seek(unit.start)
            data = f.read() if unit.stop < 0 else f.read(unit.stop - unit.start)
    except OSError as e:
        raise _unreadable(unit.path, e) from None
    rel = _rel(unit.path, cfg)
    key = rel if unit.start == 0 and unit.stop < 0 else f"{rel}@{unit.start}"
    yield key, _decode(data, cfg, unit.path, _file_fix(unit.path), counts, unit.start)


# ---------------------------------------------------------------- jsonl: units


def _compression(path: str) -> str:
    return "gzip" if path.endswith(".gz") else "zstd" if path.endswith(".zst") else ""


def _jsonl_units(cfg: DataConfig, target: int) -> list[Unit]:
    """A unit per compressed file; uncompressed ones in byte ranges of target (lines are read
    by the unit in which they start)."""
    units = []
    for path in dataset_files(cfg.dataset):
        size = os.path.getsize(path)
        if _compression(path) or size <= target:
            units.append(Unit(0, "jsonl", path, 0, -1, "", size))
            continue
        for a in range(0, size, target):
            b = min(a + target, size)
            units.append(Unit(0, "jsonl", path, a, b, "", b - a))
    return units


def _open_lines(path: str):
    """A binary file object over path's (decompressed) bytes."""
    how = _compression(path)
    if how == "gzip":
        import gzip
        return gzip.open(path, "rb")
    if how == "zstd":
        import io

        import pyarrow as pa
        return io.BufferedReader(pa.CompressedInputStream(pa.OSFile(path), "zstd"), 1 << 20)
    return open(path, "rb")


def _json_loads():
    try:
        import orjson
        return orjson.loads
    except ImportError:
        import json
        return json.loads


def _read_jsonl(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    """Keys: path@byte offset of the line (uncompressed) or path:line number (compressed)."""
    path, key, how = unit.path, cfg.text_key, _compression(unit.path)
    loads, rel, fix = _json_loads(), _rel(path, cfg), _file_fix(path)
    errors: tuple = (OSError, EOFError)
    if how == "gzip":
        import zlib
        errors += (zlib.error,)
    elif how == "zstd":
        import pyarrow as pa
        errors += (pa.ArrowException,)
    try:
        f = _open_lines(path)
        if unit.start > 0:  # a line under way at start belongs to the unit before
            f.seek(unit.start - 1)
            skipped = len(f.readline()) - 1
    except OSError as e:
        raise _unreadable(path, e) from None
    n, off = 0, unit.start + (skipped if unit.start > 0 else 0)
    with f:
        while unit.stop < 0 or off < unit.stop:
            try:
                line = f.readline()
            except errors as e:
                if not how:
                    raise _unreadable(path, e) from None
                raise _corrupt(path, e, f"after line {n}") from None
            if not line:
                return
            n += 1
            if off == 0 and line.startswith(b"\xef\xbb\xbf"):  # a byte order mark
                line, off = line[3:], 3
            if line.strip():
                if how:
                    at = f"{path} line {n}"
                    decode = lambda data: _decode(data, cfg, at, fix, counts)  # noqa: E731
                else:
                    at = (f"{path} line {n} (byte {off})" if unit.start == 0
                          else f"{path} at byte {off}")
                    decode = lambda data: _decode(data, cfg, path, fix, counts, off)  # noqa: E731
                yield (f"{rel}:{n}" if how else f"{rel}@{off}"), _json_text(loads, line, decode,
                                                                            key, at)
            off += len(line)


def _json_text(loads, line: bytes, decode: Callable[[bytes], str], key: str, at: str) -> str:
    """The string under `key` of one JSON line; one-line errors naming `at`. The bytes are parsed
    as they are (orjson checks UTF-8 itself); only a line that fails goes through decode, which
    refuses non-UTF-8 bytes or (decode_errors=replace) replaces and counts them."""
    try:
        record = loads(line)
    except ValueError:
        text = decode(line)
        try:
            record = loads(text)
        except ValueError as e:
            raise UserError(f"{at} is not valid JSON ({_why(e)}): fix or delete that "
                            "line") from None
    if not isinstance(record, dict):
        raise UserError(f"{at} is not a JSON object but {type(record).__name__}: each line must "
                        f'be an object like {{"{key}": "..."}}')
    if key not in record:
        keys = ", ".join(list(record)[:10])
        raise UserError(f"{at}: the JSON object has no key {key!r} (keys: {keys}): set "
                        "config.data.text_key to the key that holds the text")
    value = record[key]
    if not isinstance(value, str):
        raise UserError(f"{at}: {key!r} holds {type(value).__name__}, not a string: set "
                        "config.data.text_key to the key that holds the text")
    return value


# ---------------------------------------------------------------- parquet: and hf_disk: units


def _string_column(schema, key: str, path: str) -> int:
    """Index of the text column in an Arrow schema; one-line errors when absent or not text."""
    import pyarrow as pa

    if key not in schema.names:
        raise UserError(f"{path} has no column {key!r} (columns: {', '.join(schema.names[:20])}): "
                        "set config.data.text_key to the column that holds the text")
    kind = schema.field(key).type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda t: False)(kind)):
        raise UserError(f"{path}: column {key!r} is {kind}, not a string: set "
                        "config.data.text_key to the column that holds the text")
    return schema.get_field_index(key)


def _column_texts(column, first: int, path: str, rel: str, cfg: DataConfig,
                  counts: dict) -> Iterator[tuple[str, str]]:
    """(rel#row, text) of an Arrow string column whose first row is `first`; a null is blank."""
    import pyarrow as pa

    fix = "re-write it as UTF-8, or set --config.data.decode_errors=replace"
    for i, data in enumerate(column.cast(pa.large_binary()).to_pylist(), first):
        text = "" if data is None else _decode(data, cfg, f"{path} row {i}", fix, counts)
        yield f"{rel}#{i}", text


def _parquet_file(path: str):
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.ParquetFile(path)
    except OSError as e:
        raise _unreadable(path, e) from None
    except pa.ArrowException as e:
        raise UserError(f"{path} is not a Parquet file ({_why(e)}): re-write it, or move it out "
                        "of the corpus") from None


def _parquet_units(cfg: DataConfig, target: int) -> list[Unit]:
    """Runs of consecutive row groups whose text column holds about target bytes."""
    units, rows = [], 0
    for path in dataset_files(cfg.dataset):
        pf = _parquet_file(path)
        try:
            col = _string_column(pf.schema_arrow, cfg.text_key, path)
            meta = pf.metadata
            sizes = [meta.row_group(g).column(col).total_uncompressed_size
                     for g in range(meta.num_row_groups)]
            rows += meta.num_rows
        finally:
            pf.close()
        first, acc = 0, 0
        for g, size in enumerate(sizes):
            if acc and acc + size > target:
                units.append(Unit(0, "parquet", path, first, g, "", acc))
                first, acc = g, 0
            acc += size
        if sizes:
            units.append(Unit(0, "parquet", path, first, len(sizes), "", acc))
    if not rows:
        raise UserError(f"data.dataset={cfg.dataset!r}: the Parquet files hold no rows: the corpus "
                        "is empty")
    return units


def _read_parquet(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    import pyarrow as pa

    pf = _parquet_file(unit.path)
    rel = _rel(unit.path, cfg)
    try:
        stop = pf.metadata.num_row_groups if unit.stop < 0 else unit.stop
        row = sum(pf.metadata.row_group(g).num_rows for g in range(unit.start))
        batches = pf.iter_batches(batch_size=_READ_CHUNK, row_groups=list(range(unit.start, stop)),
                                  columns=[cfg.text_key], use_threads=False)
        while True:
            try:
                batch = next(batches, None)
            except (OSError, pa.ArrowException) as e:
                raise _corrupt(unit.path, e, f"at row {row}") from None
            if batch is None:
                return
            yield from _column_texts(batch.column(0), row, unit.path, rel, cfg, counts)
            row += batch.num_rows
    finally:
        pf.close()


def _hf_disk_units(cfg: DataConfig, target: int) -> list[Unit]:
    """A save_to_disk directory: a Dataset (state.json, data-*.arrow; the caller splits) or a
    DatasetDict (dataset_dict.json, a Dataset per split; train_split and eval_split are used)."""
    import json

    root = os.path.expanduser(cfg.dataset[len("hf_disk:"):])
    listing = os.path.join(root, "dataset_dict.json")
    if os.path.isfile(listing):
        with open(listing, encoding="utf-8") as f:
            splits = json.load(f).get("splits", [])
        eval_split = cfg.eval_split or ("validation" if "validation" in splits else "test")
        for name, what in ((cfg.train_split, "train_split"), (eval_split, "eval_split")):
            if name not in splits:
                raise UserError(f"config.data.{what}={name!r}: {root} has no split {name!r}; "
                                f"available: {', '.join(splits)}")
        units = (_arrow_units(os.path.join(root, cfg.train_split), "train", cfg, target)
                 + _arrow_units(os.path.join(root, eval_split), "val", cfg, target))
    elif os.path.isfile(os.path.join(root, "state.json")):
        units = _arrow_units(root, "", cfg, target)
    else:
        raise UserError(f"data.dataset={cfg.dataset!r}: {root} is not a Hugging Face dataset saved "
                        "with save_to_disk (no dataset_dict.json or state.json): name the "
                        "directory save_to_disk wrote")
    if not units:
        raise UserError(f"data.dataset={cfg.dataset!r}: the dataset has no rows: the corpus is "
                        "empty")
    return units


def _arrow_batches(path: str):
    """(memory map, stream reader) of an Arrow IPC stream file; one-line errors."""
    import pyarrow as pa

    try:
        source = pa.memory_map(path)
    except OSError as e:
        raise _unreadable(path, e) from None
    try:
        return source, pa.ipc.open_stream(source)
    except (OSError, pa.ArrowException) as e:
        source.close()
        raise UserError(f"{path} is not an Arrow stream file ({_why(e)}): save the dataset again "
                        "with save_to_disk") from None


def _arrow_units(directory: str, split: str, cfg: DataConfig, target: int) -> list[Unit]:
    """Record ranges of each data file of one saved Dataset, about target bytes each (the batch
    headers are read through a memory map, the data is not)."""
    import json

    try:
        with open(os.path.join(directory, "state.json"), encoding="utf-8") as f:
            names = [d["filename"] for d in json.load(f)["_data_files"]]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{directory}/state.json: cannot read the list of data files ({_why(e)}): "
                        "save the dataset again with save_to_disk") from None
    units = []
    for name in names:
        path = os.path.join(directory, name)
        source, reader = _arrow_batches(path)
        with source:
            _string_column(reader.schema, cfg.text_key, path)
            ranges, first, rows, acc = [], 0, 0, 0
            for batch in reader:
                if acc and acc + batch.nbytes > target:
                    ranges.append((first, rows, acc))
                    first, acc = rows, 0
                rows, acc = rows + batch.num_rows, acc + batch.nbytes
            ranges.append((first, rows, acc))
        if not rows:
            continue
        if len(ranges) == 1:
            units.append(Unit(0, "arrow", path, 0, -1, split, acc))
        else:
            units += [Unit(0, "arrow", path, a, b, split, size) for a, b, size in ranges]
    return units


def _read_arrow(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    source, reader = _arrow_batches(unit.path)
    rel = _rel(unit.path, cfg)
    with source:
        col = _string_column(reader.schema, cfg.text_key, unit.path)
        row = 0
        for batch in reader:
            end = row + batch.num_rows
            a, b = max(unit.start, row), end if unit.stop < 0 else min(unit.stop, end)
            if a < b:
                yield from _column_texts(batch.column(col).slice(a - row, b - a), a, unit.path, rel,
                                         cfg, counts)
            if unit.stop >= 0 and end >= unit.stop:
                return
            row = end


# ---------------------------------------------------------------- tfds: and stdlib units


def _tfds_units(cfg: DataConfig, target: int) -> list[Unit]:
    """Record ranges of about target bytes (from the split's num_bytes) of the train split, then
    the eval split."""
    builder, train_split, eval_split, _ = _open_tfds(cfg)
    name = "stdlib" if cfg.dataset == "stdlib" else cfg.dataset[len("tfds:"):]
    units = []
    for split, tfds_split, what in (("train", train_split, "train_split"),
                                    ("val", eval_split, "eval_split")):
        n = builder.info.splits[tfds_split].num_examples
        if not n:
            raise UserError(f"config.data.{what}={tfds_split!r}: {dataset_name(builder)} has no "
                            f"records there: pick another split")
        whole = builder.info.splits[tfds_split.split("[")[0]]  # a slice has no num_bytes
        per_record = whole.num_bytes / max(1, whole.num_examples)
        step = max(1, min(n, int(target / per_record))) if per_record else n
        units += [Unit(0, "tfds", name, a, min(a + step, n), split,
                       int(per_record * (min(a + step, n) - a))) for a in range(0, n, step)]
    return units


def _read_tfds(unit: Unit, cfg: DataConfig, counts: dict) -> Iterator[tuple[str, str]]:
    builder, train_split, eval_split, key = _open_tfds(cfg)
    split = train_split if unit.split == "train" else eval_split
    decode = lambda data, where: _decode(data, cfg, where, _TFDS_FIX, counts)  # noqa: E731
    for i, text in _split_texts(builder, split, key, decode, unit.start, unit.stop):
        yield f"{split}[{i}]", text


_UNIT_READERS = {"text": _read_text, "jsonl": _read_jsonl, "parquet": _read_parquet,
                 "arrow": _read_arrow, "tfds": _read_tfds}
