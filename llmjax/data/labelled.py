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

Shape key: N examples of a split, K classes.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import sysconfig
from collections.abc import Callable

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


def load_labelled(spec: str, *, tfds_data_dir: str = "", text_keys: tuple[str, ...] = (),
                  label_key: str = "label", train_split: str = "train", eval_split: str = "",
                  max_examples: int = 0, log: Callable[[str], None] = print) -> Labelled:
    """Read the labelled dataset named by spec (see the module docstring); max_examples caps train.

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
        data = stdlib_packages(max_examples=max_examples)
    elif spec.startswith("tfds:") and len(spec) > len("tfds:"):
        data = _load_tfds(spec, tfds_data_dir, tuple(text_keys), label_key, train_split,
                          eval_split, max_examples)
    else:
        raise ValueError(f"spec={spec!r}: must be stdlib_packages or tfds:NAME[/CONFIG] "
                         "(e.g. tfds:glue/sst2)")
    s = data.stats
    log(f"data {spec}: {data.num_classes} classes"
        f"{' (text pairs)' if data.train_pairs is not None else ''}; train {s['train_examples']} "
        f"examples (imbalance {s['train_imbalance']}), eval {s['eval_examples']} "
        f"(imbalance {s['eval_imbalance']})")
    return data


def class_stats(train_labels: np.ndarray, eval_labels: np.ndarray,
                label_names: tuple[str, ...]) -> dict:
    """Counts per class per split and imbalance (largest / smallest count; None if one is 0)."""
    out = {}
    for split, labels in (("train", train_labels), ("eval", eval_labels)):
        counts = np.bincount(labels, minlength=len(label_names))
        out[f"{split}_examples"] = len(labels)
        out[f"{split}_per_class"] = {n: int(c) for n, c in zip(label_names, counts)}
        out[f"{split}_imbalance"] = (round(float(counts.max() / counts.min()), 3)
                                     if counts.min() > 0 else None)
    return out


def _sha1(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- stdlib_packages


def stdlib_packages(stdlib_dir: str | None = None, max_examples: int = 0) -> Labelled:
    """The embedded task built from the standard library at stdlib_dir (default: this Python's)."""
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
    train_labels = np.array([r[2] for r in train_rows], np.int32)
    eval_labels = np.array([r[2] for r in eval_rows], np.int32)
    stats = class_stats(train_labels, eval_labels, PACKAGES)
    stats["files_per_class"] = {p: {"train": t, "eval": e} for p, (t, e) in n_files.items()}
    return Labelled(train_texts=[r[1] for r in train_rows], train_labels=train_labels,
                    eval_texts=[r[1] for r in eval_rows], eval_labels=eval_labels,
                    label_names=PACKAGES, stats=stats, train_ids=[r[0] for r in train_rows],
                    eval_ids=[r[0] for r in eval_rows])


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


def _load_tfds(spec: str, data_dir: str, text_keys: tuple[str, ...], label_key: str,
               train_split: str, eval_split: str, max_examples: int) -> Labelled:
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
    read = {}
    for role, split, limit in (("train", train_split, max_examples), ("eval", eval_split, 0)):
        read[role] = _read_tfds_split(builder, split, limit, text_keys, label_key,
                                      len(label_names), f"spec={spec!r}")
        if not read[role][0]:
            raise ValueError(f"{role}_split={split!r}: {name} has no examples there: pick "
                             "another split")
    (tr_texts, tr_pairs, tr_labels, tr_ids), (ev_texts, ev_pairs, ev_labels, ev_ids) = (
        read["train"], read["eval"])
    return Labelled(train_texts=tr_texts, train_labels=tr_labels, eval_texts=ev_texts,
                    eval_labels=ev_labels, label_names=label_names,
                    stats=class_stats(tr_labels, ev_labels, label_names), train_ids=tr_ids,
                    eval_ids=ev_ids, train_pairs=tr_pairs, eval_pairs=ev_pairs)


def _read_tfds_split(builder, split: str, limit: int, text_keys: tuple[str, ...],
                     label_key: str, num_classes: int, what: str):
    """(texts, second texts or None, labels (N,) int32, ids) of one split."""
    from llmjax.data import sources

    texts, pairs, labels, ids = [], [] if len(text_keys) == 2 else None, [], []
    for i, record in sources.read_records(builder, split, limit):
        label = int(record[label_key])
        if not 0 <= label < num_classes:
            hint = ("unlabelled (GLUE test splits are): evaluate on the validation split, "
                    "eval_split='validation'" if label == -1 else "corrupt: re-prepare it")
            raise ValueError(f"{what}: example {i} of split {split!r} has label {label}, "
                             f"outside 0..{num_classes - 1}: the split is {hint}")
        texts.append(sources.as_text(record[text_keys[0]], f"text_keys[0]={text_keys[0]!r}"))
        if pairs is not None:
            pairs.append(sources.as_text(record[text_keys[1]], f"text_keys[1]={text_keys[1]!r}"))
        labels.append(label)
        ids.append(f"{split}[{i}]")
    return texts, pairs, np.array(labels, np.int32), ids
