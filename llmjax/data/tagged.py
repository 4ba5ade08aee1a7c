"""Tagged text for token labelling: each example a text, its words' character spans and a tag
per word, in fixed train/eval splits.

Three kinds of spec, one stream (`TaggedStream`):
  stdlib_roles        the embedded task, offline and real: the role of every identifier in
                      standard-library code, read from its AST (llmjax.data.ast_roles: the
                      words are the source's tokens, BIO tags B-def, B-call, ..., O)
  tfds:NAME[/CONFIG]  a tfds dataset already prepared on disk with a sequence of Text tokens and
                      a sequence of ClassLabel tags, e.g. conll2003 (tokens, ner); tokens_key and
                      tags_key name the features ('' = the only such feature; tags: ner first)
  jsonl:GLOB          UTF-8 files of one JSON object per line, {"tokens": [...], "tags": [...]}
                      (tags as strings, e.g. "B-PER"); split by file (sha1 of the path relative
                      to the glob's directory, val_fraction of them) when the glob matches
                      sources.MIN_FILES_FOR_HASH_SPLIT files or more and both sides get examples,
                      else the last val_fraction of the examples (files sorted, lines in order)
  jsonl:TRAIN,EVAL    two globs, comma-separated: named train and eval files

Pre-tokenized words (tfds:, jsonl:) are joined by single spaces into the text, so the word of
span (s, e) is text[s:e] in every spec. The tfds eval split defaults to validation, else dev,
else test; its tag names are the builder's. A jsonl tag set is read from the files before any
example is streamed: the tags seen in train, "O" first, then sorted.

Bad input is a one-line ValueError before any training: tokens and tags of different lengths
(naming the file and line, or the split and example), an empty token, a line that is not such a
JSON object, a jsonl eval tag never seen in train (the model would have no class for it), an
empty split.

`FrequentTag` is the baseline every tagger is printed beside: each word's most frequent train tag.

Shape key: N words of an example, K tags.
"""
from __future__ import annotations

import collections
import dataclasses
import glob
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np

from llmjax.config import ConfigError
from llmjax.data import ast_roles, sources

EMBEDDED = "stdlib_roles"
TAGGED_SOURCES = (EMBEDDED, "tfds:NAME[/CONFIG]", "jsonl:GLOB", "jsonl:TRAIN,EVAL")
SPLITS = ("train", "eval")

Row = tuple[str, str, str, np.ndarray, list[int]]  # (split, id, text, spans_Nx2, tags)


@dataclasses.dataclass
class TaggedStream:
    """A tagged dataset read example by example: iterating yields (split, id, text, spans_Nx2
    int32, tags) rows, train's before eval's, reading the dataset again each time; `stats`
    (examples, words and tags per split, and the dataset's own facts) is set when an iteration
    ends, which fails on an empty split."""
    spec: str
    tag_names: tuple[str, ...]
    rows: Callable[[dict], Iterator[Row]]  # fills its dict with the dataset's own stats
    stats: dict | None = None

    def __iter__(self) -> Iterator[Row]:
        counts = {s: np.zeros(len(self.tag_names), np.int64) for s in SPLITS}
        examples = dict.fromkeys(SPLITS, 0)
        extra: dict = {}
        for row in self.rows(extra):
            examples[row[0]] += 1
            np.add.at(counts[row[0]], np.asarray(row[4], np.int64), 1)
            yield row
        for split in SPLITS:
            if not examples[split]:
                raise ValueError(f"{self.spec}: the {split} split has no examples: "
                                 + ("lower max_examples or add data" if split == "train" else
                                    "pick another eval split or add data"))
        self.stats = {**{f"{s}_examples": examples[s] for s in SPLITS},
                      **{f"{s}_words": int(counts[s].sum()) for s in SPLITS},
                      **{f"{s}_per_tag": dict(zip(self.tag_names, counts[s].tolist())) for s in SPLITS},
                      **extra}


def describe(spec: str, stats: dict, num_tags: int) -> str:
    """One line: tags, examples and words per split."""
    return (f"data {spec}: {num_tags} tags; train {stats['train_examples']:,} examples "
            f"({stats['train_words']:,} words), eval {stats['eval_examples']:,} "
            f"({stats['eval_words']:,} words)")


def join_words(words: Sequence[str]) -> tuple[str, np.ndarray]:
    """Pre-tokenized words as one text joined by single spaces, and their spans_Nx2 int32."""
    lengths_N = np.fromiter(map(len, words), np.int64, len(words))
    starts_N = np.concatenate([[0], np.cumsum(lengths_N + 1)[:-1]]) if len(words) else lengths_N
    return " ".join(words), np.stack([starts_N, starts_N + lengths_N], axis=1).astype(np.int32).reshape(-1, 2)


def check_tagged_spec(spec: str, key: str = "task.dataset") -> None:
    """One-line ConfigError for a spec of none of the TAGGED_SOURCES forms (globs are checked)."""
    if spec == EMBEDDED or (spec.startswith("tfds:") and spec[len("tfds:"):]):
        return
    if spec.startswith("jsonl:") and spec[len("jsonl:"):]:
        for pattern in _globs(spec):
            if not _match(pattern):
                raise ConfigError(f"config.{key}={spec!r}: the glob {pattern!r} matches no files: "
                                  "check the path (quote it in the shell)")
        return
    raise ConfigError(f"config.{key}={spec!r}: must be one of {', '.join(TAGGED_SOURCES)} "
                      "(e.g. tfds:conll2003)")


def files_key(spec: str) -> str:
    """jsonl: a hash of its files' paths, sizes and modification times (what changes when files
    are added, removed or edited); '' for the other specs."""
    if not spec.startswith("jsonl:"):
        return ""
    return sources.files_digest([f for pattern in _globs(spec) for f in _match(pattern)])


def open_tagged(spec: str, *, tfds_data_dir: str = "", tokens_key: str = "", tags_key: str = "",
                train_split: str = "train", eval_split: str = "", val_fraction: float = 0.1,
                max_examples: int = 0) -> TaggedStream:
    """The tagged dataset named by spec as a stream (see the module docstring); max_examples
    caps train (0 = all). Settings, and jsonl files, are checked here, before any example is
    streamed. tokens_key, tags_key and the splits are for tfds: only; val_fraction is the eval
    share of a jsonl:GLOB."""
    check_tagged_spec(spec)
    if max_examples < 0:
        raise ValueError(f"max_examples={max_examples}: must be >= 0 (0 = the whole train split)")
    if not spec.startswith("tfds:"):
        if tokens_key or tags_key:
            raise ValueError(f"dataset={spec!r} has its own tokens and tags: leave tokens_key and "
                             "tags_key empty (they name tfds: features)")
        if train_split != "train" or eval_split not in ("", "validation"):
            raise ValueError(f"dataset={spec!r} has splits 'train' and 'validation': got "
                             f"train_split={train_split!r}, eval_split={eval_split!r}")
    if spec == EMBEDDED:
        return TaggedStream(spec, ast_roles.TAG_NAMES, lambda extra: _embedded_rows(extra, max_examples))
    if spec.startswith("jsonl:"):
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction}: must be in (0, 1), e.g. 0.1")
        return _jsonl_stream(spec, val_fraction, max_examples)
    return _tfds_stream(spec, tfds_data_dir, tokens_key, tags_key, train_split, eval_split, max_examples)


def _embedded_rows(extra: dict, max_examples: int) -> Iterator[Row]:
    yield from ast_roles.rows(extra, max_examples=max_examples)


# ---------------------------------------------------------------- the baseline


class FrequentTag:
    """Each word's most frequent train tag (ties: the first in tag order); a word never seen in
    train gets the most frequent tag overall. `add` the train examples, then `predict`."""

    def __init__(self, num_tags: int):
        self.num_tags = num_tags
        self.counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
        self.total_K = np.zeros(num_tags, np.int64)
        self._best: dict[str, int] | None = None

    def add(self, words: Iterable[str], tags: Iterable[int]) -> None:
        for word, tag in zip(words, tags):
            self.counts[word][tag] += 1
            self.total_K[tag] += 1
        self._best = None

    def predict(self, words: Iterable[str]) -> list[int]:
        if self._best is None:
            self._best = {w: min(c, key=lambda t: (-c[t], t)) for w, c in self.counts.items()}
        default = int(self.total_K.argmax())
        return [self._best.get(w, default) for w in words]


def words_of(text: str, spans_Nx2: np.ndarray) -> list[str]:
    """The words text[s:e] of each span."""
    return [text[s:e] for s, e in spans_Nx2.tolist()]


# ---------------------------------------------------------------- jsonl:


def _globs(spec: str) -> list[str]:
    body = spec[len("jsonl:"):]
    return [os.path.expanduser(p) for p in body.split(",")] if "," in body else [os.path.expanduser(body)]


def _match(pattern: str) -> list[str]:
    return sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))


def _read_jsonl(path: str) -> Iterator[tuple[int, list[str], list[str]]]:
    """(line number, tokens, tags) of each non-blank line, checked (one-line ValueErrors)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                obj = json.loads(line)
            except ValueError as e:
                raise ValueError(f"{where}: not JSON ({e}): write one object per line, "
                                 '{"tokens": [...], "tags": [...]}') from None
            if not isinstance(obj, dict) or not all(isinstance(obj.get(k), list) for k in ("tokens", "tags")):
                raise ValueError(f'{where}: each line must be an object with "tokens" and "tags" lists')
            tokens, tags = obj["tokens"], [str(t) for t in obj["tags"]]
            if len(tokens) != len(tags):
                raise ValueError(f"{where}: {len(tokens)} tokens but {len(tags)} tags: give one tag "
                                 "per token")
            for i, t in enumerate(tokens):
                if not isinstance(t, str) or not t:
                    raise ValueError(f"{where}: token {i} is {t!r}: tokens must be non-empty strings")
            if tokens:
                yield number, tokens, tags


def _jsonl_stream(spec: str, val_fraction: float, max_examples: int) -> TaggedStream:
    """Every file read once now (checked, counted, its tags collected), then streamed."""
    globs = _globs(spec)
    if len(globs) > 2:
        raise ValueError(f"dataset={spec!r}: give one glob, or two (train,eval) separated by a comma")
    files = [_match(p) for p in globs]
    tags_per_file = {f: collections.Counter() for group in files for f in group}
    examples = dict.fromkeys(tags_per_file, 0)
    for f in tags_per_file:
        for _, _, tags in _read_jsonl(f):
            tags_per_file[f].update(tags)
            examples[f] += 1
    if len(files) == 2:
        plan = {"files": {"train": files[0], "eval": files[1]}}
    else:
        plan = _plan(spec, files[0], examples, val_fraction)
    seen = {s: collections.Counter() for s in SPLITS}
    if "files" in plan:
        for split in SPLITS:
            for f in plan["files"][split]:
                seen[split].update(tags_per_file[f])
    else:  # the tail split: tags counted again by example
        for split, _, _, _, tags in _tail_rows(files[0], plan["cut"]):
            seen[split].update(tags)
    for split in SPLITS:
        if not sum(seen[split].values()):
            raise ValueError(f"dataset={spec!r}: the {split} files hold no examples: add "
                             '{"tokens": [...], "tags": [...]} lines')
    unseen = sorted(set(seen["eval"]) - set(seen["train"]))
    if unseen:
        raise ValueError(f"dataset={spec!r}: eval tags {', '.join(unseen)} never occur in train (the "
                         "tag sets disagree between splits): add train examples with them or fix the tags")
    tag_names = tuple(sorted(seen["train"], key=lambda t: (t != "O", t)))
    index = {t: i for i, t in enumerate(tag_names)}

    def rows(extra: dict) -> Iterator[Row]:
        if "files" in plan:
            extra["files"] = {s: len(plan["files"][s]) for s in SPLITS}
            source = ((s, f, n, tokens, tags) for s in SPLITS for f in plan["files"][s]
                      for n, tokens, tags in _read_jsonl(f))
        else:  # one set of files, eval its last examples
            extra["files"] = {"train": len(files[0]), "eval": len(files[0]), "eval_from_example": plan["cut"]}
            source = _tail_rows(files[0], plan["cut"])
        kept = 0
        for split, path, number, tokens, tags in source:
            if split == "train":
                kept += 1
                if max_examples and kept > max_examples:
                    continue
            text, spans_Nx2 = join_words(tokens)
            yield split, f"{path}:{number}", text, spans_Nx2, [index[t] for t in tags]

    return TaggedStream(spec, tag_names, rows)


def _plan(spec: str, paths: list[str], examples: dict[str, int], val_fraction: float) -> dict:
    """{"files": per split} (by the hash of each file's path) or {"cut": train examples}."""
    if len(paths) >= sources.MIN_FILES_FOR_HASH_SPLIT:
        root = sources.glob_root(os.path.expanduser(spec[len("jsonl:"):]))
        held = {f: sources.is_validation(os.path.relpath(f, root).replace(os.sep, "/"), val_fraction)
                for f in paths}
        by_split = {"train": [f for f in paths if not held[f]], "eval": [f for f in paths if held[f]]}
        if all(sum(examples[f] for f in by_split[s]) for s in SPLITS):
            return {"files": by_split}
    total = sum(examples.values())
    return {"cut": int(total * (1 - val_fraction))}


def _tail_rows(paths: list[str], cut: int) -> Iterator[tuple[str, str, int, list[str], list[str]]]:
    """(split, path, line, tokens, tags): the first `cut` examples train, the rest eval."""
    n = 0
    for path in paths:
        for number, tokens, tags in _read_jsonl(path):
            yield "train" if n < cut else "eval", path, number, tokens, tags
            n += 1


# ---------------------------------------------------------------- tfds:


def _tfds_stream(spec: str, data_dir: str, tokens_key: str, tags_key: str, train_split: str,
                 eval_split: str, max_examples: int) -> TaggedStream:
    """The builder opened and checked now; both splits read at each iteration."""
    import tensorflow_datasets as tfds

    builder = sources.open_prepared(spec[len("tfds:"):], data_dir, f"dataset={spec!r}")
    name = sources.dataset_name(builder)
    splits = list(builder.info.splits.keys())
    eval_split = eval_split or next((s for s in ("validation", "dev") if s in splits), "test")
    sources.check_split(builder, train_split, "train_split")
    sources.check_split(builder, eval_split, "eval_split")

    def sequences(kind) -> list[str]:
        return [k for k, f in builder.info.features.items()
                if isinstance(f, tfds.features.Sequence) and isinstance(f.feature, kind)]

    texts, labels = sequences(tfds.features.Text), sequences(tfds.features.ClassLabel)
    tokens_key = tokens_key or (texts[0] if len(texts) == 1 else "")
    tags_key = tags_key or ("ner" if "ner" in labels else labels[0] if len(labels) == 1 else "")
    if tokens_key not in texts:
        raise ValueError(f"tokens_key={tokens_key!r}: {name} has no such sequence of Text; name "
                         f"one of: {', '.join(texts) or 'none'}")
    if tags_key not in labels:
        raise ValueError(f"tags_key={tags_key!r}: {name} has no such sequence of ClassLabel; name "
                         f"one of: {', '.join(labels) or 'none'}")
    tag_names = tuple(builder.info.features[tags_key].feature.names)

    def rows(extra: dict) -> Iterator[Row]:
        extra["splits"] = {"train": train_split, "eval": eval_split}
        for role, split, limit in (("train", train_split, max_examples), ("eval", eval_split, 0)):
            for i, record in sources.read_records(builder, split, limit):
                words = [sources.as_text(t, f"tokens_key={tokens_key!r}") for t in record[tokens_key]]
                tags = [int(t) for t in np.asarray(record[tags_key]).tolist()]
                if len(words) != len(tags):
                    raise ValueError(f"{name} split {split!r} example {i}: {len(words)} tokens but "
                                     f"{len(tags)} tags: re-prepare it, or name matching features")
                if any(not 0 <= t < len(tag_names) for t in tags):
                    raise ValueError(f"{name} split {split!r} example {i}: a tag outside "
                                     f"0..{len(tag_names) - 1}: the split is unlabelled or corrupt")
                if not words or any(not w for w in words):  # nothing to tag, or a word without text
                    extra["skipped"] = extra.get("skipped", 0) + 1
                    continue
                text, spans_Nx2 = join_words(words)
                yield role, f"{split}[{i}]", text, spans_Nx2, tags

    return TaggedStream(spec, tag_names, rows)
