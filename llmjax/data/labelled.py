"""Labelled text for sequence classification: texts (or text pairs) and class ids per split.

Two kinds of spec, one result (`Labelled`):
  stdlib_packages   the embedded task, offline and real: which standard-library package a chunk
                    of Python source comes from (10 classes, read from the running Python)
  tfds:NAME[/CFG]   a tfds dataset already prepared on disk with a ClassLabel feature, e.g.
                    glue/sst2 (sentence), imdb_reviews (text), glue/mrpc (sentence1, sentence2)

stdlib_packages, decided once and fixed so that labels mean the same on every machine:
  classes   PACKAGES: the 10 largest standard-library packages by source characters on CPython
            3.11, leaving out what some builds or versions lack (test, idlelib and tkinter are
            separate distro packages; distutils and lib2to3 are gone in 3.12/3.13), generated
            tables (encodings, html.entities dominates html, pydoc_data) and every test/tests
            sub-package. All 10 exist on CPython 3.10 to 3.13.
  examples  chunks of CHUNK_LINES consecutive kept lines (at most CHUNK_CHARS characters; a file's
            tail under MIN_CHUNK_LINES lines is dropped). Kept lines are non-blank and not import
            statements (imports name the package or its modules: a giveaway), and every label
            name as a whole word is replaced by MASK in every class, so the model must read code.
  split     by file, so no file is in both splits: per package, files in order of sha1(path) go
            to eval while eval stays under EVAL_FRACTION of the package's chunks (a file that
            would take it past twice that is skipped); a package whose files are all too big
            gives its smallest file. Every class therefore has files in both splits.
  balance   each class keeps at most MAX_TRAIN_IMBALANCE x the smallest class's train chunks
            (equal caps would drop most of the data, xmlrpc being small); eval stays natural.
  order     both splits in order of sha1(id), so classes interleave and a prefix is a fair sample.

`open_labelled` reads either kind example by example (`LabelledStream`), so a task can tokenize
a large tfds dataset into its cache (llmjax.data.example_cache) without holding it; the
embedded stdlib_packages (a few MB) is built in memory, then streamed the same way.
`load_labelled` collects a stream into lists (`Labelled`).

Shape key: N examples of a split, K classes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sysconfig
from collections.abc import Callable, Iterator

import numpy as np

PACKAGES = ("asyncio", "email", "xml", "multiprocessing", "unittest", "importlib", "http",
            "logging", "urllib", "xmlrpc")
CHUNK_LINES = 12
CHUNK_CHARS = 1000
MIN_CHUNK_LINES = 6
EVAL_FRACTION = 0.2
MAX_TRAIN_IMBALANCE = 2
MASK = "pkg"
_SKIP_DIRS = ("__pycache__", "test", "tests", "idle_test", "site-packages")
_IMPORT = re.compile(r"\s*(import\s+[\w.]|from\s+[\w.]+\s+import\b)")
_LABEL_WORD = re.compile(r"\b(" + "|".join(PACKAGES) + r")\b")


@dataclasses.dataclass
class Labelled:
    """Both splits of a classification dataset; `*_pairs` hold second texts of pair tasks.

    `*_ids` say where each example came from (stdlib: "path:line"; tfds: "split[index]"), for
    error analysis and leakage checks. `stats` is JSON-able: counts per class and imbalance.
    """
    train_texts: list[str]
    train_labels: np.ndarray  # (N,) int32
    eval_texts: list[str]
    eval_labels: np.ndarray  # (N,) int32
    label_names: tuple[str, ...]
    stats: dict
    train_ids: list[str]
    eval_ids: list[str]
    train_pairs: list[str] | None = None
    eval_pairs: list[str] | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)


Row = tuple[str, str, tuple[str, ...], int]  # (split, id, one or two texts, label)


@dataclasses.dataclass
class LabelledStream:
    """A labelled dataset read example by example: iterating yields (split, id, texts, label)
    rows, train's before eval's, reading the dataset again each time; `stats` (class_stats and
    the dataset's own facts) is set when an iteration ends."""
    spec: str
    label_names: tuple[str, ...]
    paired: bool  # two texts per example
    rows: Callable[[dict], Iterator[Row]]  # fills its dict with the dataset's own stats
    stats: dict | None = None

    def __iter__(self) -> Iterator[Row]:
        counts = {s: np.zeros(len(self.label_names), np.int64) for s in ("train", "eval")}
        extra: dict = {}
        for row in self.rows(extra):
            counts[row[0]][row[3]] += 1
            yield row
        self.stats = {**_count_stats(counts, self.label_names), **extra}


def load_labelled(spec: str, *, tfds_data_dir: str = "", text_keys: tuple[str, ...] = (),
                  label_key: str = "label", train_split: str = "train", eval_split: str = "",
                  max_examples: int = 0, log: Callable[[str], None] = print) -> Labelled:
    """Read the labelled dataset named by spec into lists (see `open_labelled`)."""
    stream = open_labelled(spec, tfds_data_dir=tfds_data_dir, text_keys=text_keys,
                           label_key=label_key, train_split=train_split, eval_split=eval_split,
                           max_examples=max_examples)
    data = _collect(stream)
    log(describe(spec, data.stats, data.num_classes, stream.paired))
    return data


def describe(spec: str, stats: dict, num_classes: int, paired: bool) -> str:
    """One line: classes, examples per split and their imbalance."""
    return (f"data {spec}: {num_classes} classes{' (text pairs)' if paired else ''}; train "
            f"{stats['train_examples']} examples (imbalance {stats['train_imbalance']}), eval "
            f"{stats['eval_examples']} (imbalance {stats['eval_imbalance']})")


def _collect(stream: LabelledStream) -> Labelled:
    rows: dict[str, list[Row]] = {"train": [], "eval": []}
    for row in stream:
        rows[row[0]].append(row)
    field = lambda split, i: [r[i] for r in rows[split]]  # noqa: E731
    texts = lambda split, j: [r[2][j] for r in rows[split]]  # noqa: E731
    return Labelled(train_texts=texts("train", 0),
                    train_labels=np.array(field("train", 3), np.int32),
                    eval_texts=texts("eval", 0), eval_labels=np.array(field("eval", 3), np.int32),
                    label_names=stream.label_names, stats=stream.stats,
                    train_ids=field("train", 1), eval_ids=field("eval", 1),
                    train_pairs=texts("train", 1) if stream.paired else None,
                    eval_pairs=texts("eval", 1) if stream.paired else None)


def open_labelled(spec: str, *, tfds_data_dir: str = "", text_keys: tuple[str, ...] = (),
                  label_key: str = "label", train_split: str = "train", eval_split: str = "",
                  max_examples: int = 0) -> LabelledStream:
    """The labelled dataset named by spec as a stream (see the module docstring); max_examples
    caps train. Settings are checked here, before any example is read.

    tfds: text_keys name one Text feature (two for a pair task; empty = the only Text feature),
    label_key a ClassLabel feature; eval_split '' means validation, else test.
    """
    if max_examples < 0:
        raise ValueError(f"max_examples={max_examples}: must be >= 0 (0 = the whole train split)")
    if spec == "stdlib_packages":
        if text_keys or label_key != "label":
            raise ValueError(f"spec={spec!r} has its own text and labels: leave text_keys empty "
                             "and label_key='label'")
        if train_split != "train" or eval_split not in ("", "validation"):
            raise ValueError(f"spec={spec!r} has splits 'train' and 'validation': got "
                             f"train_split={train_split!r}, eval_split={eval_split!r}")
        return LabelledStream(spec, PACKAGES, False, lambda extra: _stdlib_rows(
            extra, max_examples=max_examples))
    if spec.startswith("tfds:") and len(spec) > len("tfds:"):
        return _tfds_stream(spec, tfds_data_dir, tuple(text_keys), label_key, train_split,
                            eval_split, max_examples)
    raise ValueError(f"spec={spec!r}: must be stdlib_packages or tfds:NAME[/CONFIG] "
                     "(e.g. tfds:glue/sst2)")


def class_stats(train_labels: np.ndarray, eval_labels: np.ndarray,
                label_names: tuple[str, ...]) -> dict:
    """Counts per class per split and imbalance (largest / smallest count; None if one is 0)."""
    return _count_stats({split: np.bincount(labels, minlength=len(label_names))
                         for split, labels in (("train", train_labels), ("eval", eval_labels))},
                        label_names)


def _count_stats(counts: dict[str, np.ndarray], label_names: tuple[str, ...]) -> dict:
    """class_stats from each split's examples per class."""
    out = {}
    for split in ("train", "eval"):
        counts_K = counts[split]
        out[f"{split}_examples"] = int(counts_K.sum())
        out[f"{split}_per_class"] = {n: int(c) for n, c in zip(label_names, counts_K)}
        out[f"{split}_imbalance"] = (round(float(counts_K.max() / counts_K.min()), 3)
                                     if counts_K.min() > 0 else None)
    return out


def _sha1(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- stdlib_packages


def stdlib_packages(stdlib_dir: str | None = None, max_examples: int = 0) -> Labelled:
    """The embedded task built from the standard library at stdlib_dir (default: this Python's)."""
    return _collect(LabelledStream("stdlib_packages", PACKAGES, False, lambda extra: _stdlib_rows(
        extra, stdlib_dir, max_examples)))


def _stdlib_rows(extra: dict, stdlib_dir: str | None = None, max_examples: int = 0
                 ) -> Iterator[Row]:
    """The embedded task's rows, built in memory; extra gets files_per_class."""
    root = stdlib_dir or sysconfig.get_paths()["stdlib"]
    train, evals, n_files = [], [], {}
    for label, package in enumerate(PACKAGES):
        files = {path: _chunks(text) for path, text in _package_files(root, package)}
        eval_files = _eval_files({p: len(c) for p, c in files.items()}, package, root)
        n_files[package] = (sum(map(bool, files.values())) - len(eval_files), len(eval_files))
        for path, chunks in files.items():
            rows = [(f"{path}:{line}", text, label) for line, text in chunks]
            (evals if path in eval_files else train).append(rows)
    train_rows = _balance([r for rows in train for r in rows])
    eval_rows = sorted((r for rows in evals for r in rows), key=lambda r: _sha1(r[0]))
    if max_examples:
        train_rows = train_rows[:max_examples]
    extra["files_per_class"] = {p: {"train": t, "eval": e} for p, (t, e) in n_files.items()}
    for split, rows in (("train", train_rows), ("eval", eval_rows)):
        for example_id, text, label in rows:
            yield split, example_id, (text,), label


def _package_files(root: str, package: str) -> list[tuple[str, str]]:
    """(path relative to root, text) of the package's readable .py files, tests left out; sorted."""
    top = os.path.join(root, package)
    if not os.path.isfile(os.path.join(top, "__init__.py")):
        raise ValueError(f"stdlib_packages: package {package!r} is missing under {root}: run on "
                         "a full CPython 3.10+ (not a trimmed build), or use a tfds: dataset")
    paths = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS)
        paths.extend(os.path.join(dirpath, f) for f in filenames if f.endswith(".py"))
    out = []
    for path in sorted(paths):
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except (OSError, UnicodeDecodeError):
            continue
        out.append((os.path.relpath(path, root).replace(os.sep, "/"), text))
    return out


def _kept_lines(text: str) -> list[tuple[int, str]]:
    """(1-based line number, line) of non-blank non-import lines, label names masked."""
    out, skip_to_paren, skip_continued = [], False, False
    for number, line in enumerate(text.splitlines(), start=1):
        if skip_to_paren or skip_continued:  # the rest of a multi-line import
            skip_to_paren = skip_to_paren and ")" not in line
            skip_continued = line.rstrip().endswith("\\")
            continue
        if _IMPORT.match(line):
            skip_to_paren = "(" in line and ")" not in line
            skip_continued = line.rstrip().endswith("\\")
            continue
        if line.strip():
            out.append((number, _LABEL_WORD.sub(MASK, line.rstrip())[:CHUNK_CHARS]))
    return out


def _chunks(text: str) -> list[tuple[int, str]]:
    """(first line number, chunk): CHUNK_LINES kept lines, fewer where CHUNK_CHARS would pass."""
    out, block, size = [], [], 0
    for number, line in _kept_lines(text) + [(0, None)]:
        if block and (line is None or len(block) == CHUNK_LINES
                      or size + 1 + len(line) > CHUNK_CHARS):
            if line is not None or len(block) >= MIN_CHUNK_LINES:
                out.append((block[0][0], "\n".join(t for _, t in block)))
            block, size = [], 0
        if line is not None:
            block.append((number, line))
            size += len(line) + (len(block) > 1)
    return out


def _eval_files(chunks_per_file: dict[str, int], package: str, root: str) -> set[str]:
    """The package's eval files by the module docstring's rule; train keeps at least one."""
    nonempty = {p: n for p, n in chunks_per_file.items() if n}
    if len(nonempty) < 2:
        raise ValueError(f"stdlib_packages: package {package!r} under {root} has "
                         f"{len(nonempty)} file(s) with code, 2 are needed (one per split): "
                         "run on a full CPython 3.10+")
    target = EVAL_FRACTION * sum(nonempty.values())
    chosen, held = set(), 0
    for path in sorted(nonempty, key=_sha1):
        if held < target and held + nonempty[path] <= 2 * target:
            chosen.add(path)
            held += nonempty[path]
    if not chosen:
        chosen.add(min(nonempty, key=lambda p: (nonempty[p], _sha1(p))))
    return chosen


def _balance(rows: list[tuple[str, str, int]]) -> list[tuple[str, str, int]]:
    """At most MAX_TRAIN_IMBALANCE x the smallest class per class (lowest sha1(id) kept); shuffled."""
    rows = sorted(rows, key=lambda r: _sha1(r[0]))
    counts = np.bincount([r[2] for r in rows], minlength=len(PACKAGES))
    cap, kept = MAX_TRAIN_IMBALANCE * int(counts.min()), np.zeros(len(PACKAGES), int)
    out = []
    for row in rows:
        if kept[row[2]] < cap:
            kept[row[2]] += 1
            out.append(row)
    return out


# ---------------------------------------------------------------- tfds:


def _tfds_stream(spec: str, data_dir: str, text_keys: tuple[str, ...], label_key: str,
                 train_split: str, eval_split: str, max_examples: int) -> LabelledStream:
    """The builder opened and checked now; both splits read at each iteration."""
    import tensorflow_datasets as tfds

    from llmjax.data import sources

    builder = sources.open_prepared(spec[len("tfds:"):], data_dir, f"spec={spec!r}")
    name = sources.dataset_name(builder)
    eval_split = eval_split or sources.default_eval_split(builder)
    sources.check_split(builder, train_split, "train_split")
    sources.check_split(builder, eval_split, "eval_split")
    features = builder.info.features
    classes = [k for k, f in features.items() if isinstance(f, tfds.features.ClassLabel)]
    if label_key not in classes:
        raise ValueError(f"label_key={label_key!r}: {name} has no such ClassLabel feature; "
                         f"ClassLabel features: {', '.join(classes) or 'none'}")
    texts = [k for k, f in features.items() if isinstance(f, tfds.features.Text)]
    if not text_keys and len(texts) != 1:
        raise ValueError(f"text_keys=(): {name} has {len(texts)} Text features, name one (or two "
                         f"for a pair task); Text features: {', '.join(texts) or 'none'}")
    text_keys = text_keys or (texts[0],)
    if len(text_keys) > 2 or any(k not in texts for k in text_keys):
        raise ValueError(f"text_keys={text_keys!r}: must be one or two Text features of {name}; "
                         f"Text features: {', '.join(texts) or 'none'}")
    label_names = tuple(features[label_key].names)

    def rows(extra: dict) -> Iterator[Row]:
        for role, split, limit in (("train", train_split, max_examples), ("eval", eval_split, 0)):
            n = 0
            for row in _read_tfds_split(builder, split, limit, text_keys, label_key,
                                        len(label_names), f"spec={spec!r}"):
                n += 1
                yield (role, *row)
            if not n:
                raise ValueError(f"{role}_split={split!r}: {name} has no examples there: pick "
                                 "another split")

    return LabelledStream(spec, label_names, len(text_keys) == 2, rows)


def _read_tfds_split(builder, split: str, limit: int, text_keys: tuple[str, ...],
                     label_key: str, num_classes: int, what: str
                     ) -> Iterator[tuple[str, tuple[str, ...], int]]:
    """(id, texts, label) of each example of one split, streamed."""
    from llmjax.data import sources

    for i, record in sources.read_records(builder, split, limit):
        label = int(record[label_key])
        if not 0 <= label < num_classes:
            hint = ("unlabelled (GLUE test splits are): evaluate on the validation split, "
                    "eval_split='validation'" if label == -1 else "corrupt: re-prepare it")
            raise ValueError(f"{what}: example {i} of split {split!r} has label {label}, "
                             f"outside 0..{num_classes - 1}: the split is {hint}")
        texts = tuple(sources.as_text(record[k], f"text_keys[{j}]={k!r}")
                      for j, k in enumerate(text_keys))
        yield f"{split}[{i}]", texts, label
