"""(source, target) text pairs for sequence-to-sequence tasks, with fixed train/eval splits.

Four kinds of spec, one result (`Pairs`):
  stdlib_docstrings   the embedded task, offline and real: a function of the running Python's
                      standard library (its code, docstring removed) -> the docstring's summary
  gettext:LANG[:ROOT] the machine's message catalogs as English -> LANG translation pairs
                      (llmjax.data.gettext_catalogs; ROOT default /usr/share/locale)
  pairs:GLOB          UTF-8 text files of `source<TAB>target` lines
  tfds:NAME[/CONFIG]  a tfds dataset already prepared on disk, e.g. wmt14_translate/de-en; the
                      two features default to the builder's supervised_keys

stdlib_docstrings, decided once so that the task means the same on every machine:
  files     every .py file under the stdlib root except tests (test/, tests/, idle_test/ dirs
            and test_*.py files: their docstrings describe test cases) and two applications
            that are not library code (idlelib, lib2to3); site-packages is never walked.
  examples  every def / async def (methods and nested functions too) whose body starts with a
            docstring. source = the whole definition, decorators included (@property or
            @classmethod shape what the summary says), dedented, the docstring statement's lines
            removed; target = the docstring's first paragraph joined into one line and cut after
            its first sentence (summaries often wrap over two lines).
  filters   each dropped function counts under the first reason that applies (DROP_REASONS):
            the docstring shares a line with code, a target under MIN_TARGET_WORDS words, a
            body with nothing but the docstring, pass, ... or raise NotImplementedError, a
            source over MAX_SOURCE_CHARS characters, a (source, target) pair seen before (train
            is read before eval, so eval never repeats a training pair). There is no minimum
            length: what is left always has the def line and a statement, and one-statement
            functions (`def ne(a, b): return a != b` -> "Same as a != b.") are real examples.
  split     by file group: sha1 of the group's first path relative to the stdlib root
            (sources.is_validation; file_groups), a group being the files linked by a kept
            function's normalised summary (case, digits, placeholders, whitespace folded). So a
            file's functions are all on one side (its sibling methods are near-duplicates: a
            split by function puts 65 of 546 eval sources within a 0.9 edit ratio of a train
            source and the nearest train target at BLEU 25.5), no summary is on both sides (by
            file alone 26 were, cross-file copies like _pyio and io: lookup BLEU 6.4, near
            duplicates 8; by group 0, 2.5 and 0 at val_fraction 0.1), and the split does not
            move between machines with this Python.
  order     both splits in order of sha1("path:line"), so a prefix (max_examples, a few eval
            batches) is a fair sample of the library.

pairs:GLOB is split by file (the same hash) when it matches MIN_FILES_FOR_HASH_SPLIT files or
more, else the last val_fraction of its lines (sorted files, in order) are eval; pairs with an
empty side are dropped, and repeats as above. tfds: keeps its own splits untouched apart from
dropping train pairs with an empty side (eval stays whole, so scores compare with published
ones).

gettext:LANG is split by the hash of each English source's normalised form
(gettext_catalogs.normalise: case, digits, printf/format placeholders and whitespace folded), so
"cannot open %s" and "Cannot open %d" are on one side, and the machine's set of packages cannot
move a message across; both splits in order of sha1(source), so a prefix samples every catalog.
The eval stats count the eval sources with a near-duplicate train source
(gettext_catalogs.near_duplicates).

A dev split for tuning without touching eval, for the hash-split specs (stdlib_docstrings,
gettext:, pairs:GLOB; pairs:GLOB's line-tail split likewise by lines): eval_split="dev"
evaluates on the band val_fraction <= h < 2 * val_fraction of the split's hash h (in [0, 1))
and trains on h >= 2 * val_fraction; the eval split (h < val_fraction) is not read at all. So a
dev-tuned run never trains on dev nor sees eval, and the default run (eval_split '' or
'validation') trains on dev.

`open_pairs` reads any of them pair by pair (`PairStream`), so a task can tokenize a corpus of
millions of pairs into its cache (llmjax.data.example_cache) without holding it: pairs:GLOB and
tfds: stream their files and records (pairs:GLOB's repeats are found by a 16-byte content hash
per pair: about 85 MB per million pairs, the only memory that grows with the corpus; its
line-tail split counts the lines in a first pass); the embedded stdlib_docstrings (a few MB) is
built in memory, then streamed the same way. `load_pairs` collects a stream into lists.
"""
from __future__ import annotations

import ast
import collections
import dataclasses
import functools
import glob
import hashlib
import os
import re
import sysconfig
import textwrap
import time
from collections.abc import Callable, Iterable, Iterator

from llmjax.config import ConfigError
from llmjax.data import gettext_catalogs, sources
from llmjax.data.gettext_catalogs import normalise
from llmjax.data.preparation import content_hash

PAIR_SOURCES = ("stdlib_docstrings", "gettext:LANG[:ROOT]", "pairs:GLOB", "tfds:NAME[/CONFIG]")
MIN_TARGET_WORDS = 3
MAX_SOURCE_CHARS = 2000
DROP_REASONS = ("inline_docstring", "short_target", "trivial_body", "long_source",
                "duplicate", "empty",
                *(r for r in gettext_catalogs.DROP_REASONS if r != "empty"), "max_examples")
_NOT_LIBRARY_DIRS = frozenset(("test", "tests", "idle_test", "idlelib", "lib2to3"))
_BLANK_LINE = re.compile(r"\n\s*\n")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")


@dataclasses.dataclass
class Pairs:
    """Both splits as parallel lists of texts; `stats` is JSON-able (see `split_stats`)."""
    train_sources: list[str]
    train_targets: list[str]
    eval_sources: list[str]
    eval_targets: list[str]
    stats: dict


def check_pairs_spec(spec: str, key: str = "task.dataset") -> None:
    """One-line ConfigError for a spec of none of the PAIR_SOURCES forms (globs are checked)."""
    if spec == "stdlib_docstrings":
        return
    if spec.startswith("gettext:") and spec[len("gettext:"):]:
        lang, root = gettext_spec(spec)
        if not lang or "/" in lang or not gettext_catalogs.catalog_paths(lang, root):
            raise ConfigError(f"config.{key}={spec!r}: {gettext_catalogs.missing_hint(lang, root)}")
        return
    if spec.startswith("tfds:") and spec[len("tfds:"):]:
        return
    if spec.startswith("pairs:") and spec[len("pairs:"):]:
        if not _match(spec):
            raise ConfigError(f"config.{key}={spec!r}: the glob matches no files: check the path "
                              "(quote it in the shell)")
        return
    raise ConfigError(f"config.{key}={spec!r}: must be one of {', '.join(PAIR_SOURCES)} "
                      "(e.g. tfds:wmt14_translate/de-en)")


@dataclasses.dataclass
class PairStream:
    """A pairs dataset read pair by pair: iterating yields (split, source, target) of each kept
    pair, train's before eval's, reading the dataset again each time; `stats` (split_stats of
    each split) is set when an iteration ends."""
    spec: str
    # (split, drop reason or '', source, target) of each pair read; fills the dict it is given
    # with facts per split (the embedded task's files)
    rows: Callable[[dict], Iterator[tuple[str, str, str, str]]]
    stats: dict | None = None

    def __iter__(self) -> Iterator[tuple[str, str, str]]:
        reasons = {"train": collections.Counter(), "eval": collections.Counter()}
        extra: dict = {}
        for split, reason, source, target in self.rows(extra):
            reasons[split][reason] += 1
            if not reason:
                yield split, source, target
        self.stats = {s: dict(extra.get(s, {}), **_counted(reasons[s])) for s in reasons}
        self.stats.update({k: v for k, v in extra.items() if k not in reasons})  # the corpus's


def load_pairs(spec: str, *, tfds_data_dir: str = "", source_key: str = "", target_key: str = "",
               train_split: str = "train", eval_split: str = "", val_fraction: float = 0.05,
               max_examples: int = 0, log: Callable[[str], None] = print) -> Pairs:
    """Read the pairs named by spec into lists (see `open_pairs` for the arguments)."""
    start = time.time()
    stream = open_pairs(spec, tfds_data_dir=tfds_data_dir, source_key=source_key,
                        target_key=target_key, train_split=train_split, eval_split=eval_split,
                        val_fraction=val_fraction, max_examples=max_examples, log=log)
    texts: dict[str, tuple[list[str], list[str]]] = {"train": ([], []), "eval": ([], [])}
    for split, source, target in stream:
        texts[split][0].append(source)
        texts[split][1].append(target)
    data = Pairs(train_sources=texts["train"][0], train_targets=texts["train"][1],
                 eval_sources=texts["eval"][0], eval_targets=texts["eval"][1], stats=stream.stats)
    log(f"data {spec}: {describe(data.stats)}; {time.time() - start:.1f}s")
    return data


def open_pairs(spec: str, *, tfds_data_dir: str = "", source_key: str = "", target_key: str = "",
               train_split: str = "train", eval_split: str = "", val_fraction: float = 0.05,
               max_examples: int = 0, log: Callable[[str], None] = print) -> PairStream:
    """The pairs named by spec as a stream (see the module docstring); max_examples caps train
    (0 = all). Settings are checked here, before any pair is read.

    source_key/target_key and the splits are for tfds: only ('' = supervised_keys, validation
    else test); val_fraction is the eval share of the other specs, whose eval_split is ''
    (= validation) or 'dev' (the band before eval: see the module docstring).
    """
    check_pairs_spec(spec)
    if max_examples < 0:
        raise ValueError(f"max_examples={max_examples}: must be >= 0 (0 = the whole train split)")
    if not spec.startswith("tfds:"):
        if source_key or target_key:
            raise ValueError(f"spec={spec!r} has its own sources and targets: leave source_key "
                             "and target_key empty (they name tfds: features)")
        if train_split != "train" or eval_split not in ("", "validation", "dev"):
            raise ValueError(f"spec={spec!r} has splits 'train', 'validation' and 'dev': got "
                             f"train_split={train_split!r}, eval_split={eval_split!r}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction={val_fraction}: must be in (0, 1), e.g. 0.05")
        if eval_split == "dev" and val_fraction >= 0.5:
            raise ValueError(f"val_fraction={val_fraction} with eval_split='dev': dev is the next "
                             "val_fraction after eval, so it must be under 0.5, e.g. 0.05")
    dev = eval_split == "dev"
    if spec == "stdlib_docstrings":
        rows = functools.partial(_stdlib_rows, val_fraction=val_fraction, max_examples=max_examples,
                                 dev=dev)
    elif spec.startswith("gettext:"):
        rows = _gettext_rows(spec, val_fraction, dev, max_examples, log)
    elif spec.startswith("pairs:"):
        rows = _file_rows(spec, val_fraction, max_examples, log, dev)
    else:
        rows = _tfds_rows(spec, tfds_data_dir, source_key, target_key, train_split, eval_split,
                          max_examples)
    return PairStream(spec, rows)


def files_key(spec: str) -> str:
    """pairs:GLOB and gettext: a hash of their files' paths, sizes and modification times (what
    changes when files are added, removed or edited, e.g. by a package upgrade); '' for the
    other specs."""
    if spec.startswith("gettext:"):
        return sources.files_digest(gettext_catalogs.catalog_paths(*gettext_spec(spec)))
    if not spec.startswith("pairs:"):
        return ""
    return sources.files_digest(_match(spec))


_SNAKE_JOIN = re.compile(r"(?<=[A-Za-z0-9])_(?=[A-Za-z0-9])")


def split_identifiers(code: str) -> str:
    """snake_case names as their words joined by " _ " (`get_running_loop` -> `get _ running _
    loop`): a tokenizer then gives a name's words the pieces prose uses, so a summary can copy
    them (code summarisation's usual preprocessing). Leading and trailing underscores stay."""
    return _SNAKE_JOIN.sub(" _ ", code)


def split_stats(dropped: Iterable[str]) -> dict:
    """read / kept / dropped per reason of one split, from each read pair's reason ('' = kept)."""
    return _counted(collections.Counter(dropped))


def _counted(counts: collections.Counter) -> dict:
    """split_stats of a Counter of reasons."""
    counts = collections.Counter(counts)
    kept = counts.pop("", 0)
    return {"read": kept + sum(counts.values()), "kept": kept,
            "dropped": {r: counts[r] for r in DROP_REASONS if counts[r]}}


def describe(stats: dict) -> str:
    """One line: pairs kept per split, then what was dropped and why."""
    parts = []
    for split in ("train", "eval"):
        s = stats[split]
        files = f" from {s['files']} files" if "files" in s else ""
        why = ", ".join(f"{n} {r}" for r, n in s["dropped"].items())
        parts.append(f"{split} {s['kept']:,} pairs{files} (of {s['read']:,} read"
                     + (f"; dropped {why})" if why else ")"))
    if "catalogs" in stats:
        c = stats["catalogs"]
        parts[-1] += (f"; {c['read']} catalogs ({len(c['skipped'])} skipped), plural entries "
                      f"kept as singular {c['plural_kept']}, with context {c['context_kept']}; "
                      f"{stats['eval']['near_duplicates']:,} eval sources have a train source at "
                      f"ratio >= {gettext_catalogs.NEAR_DUPLICATE_RATIO}")
    return ", ".join(parts)


def gettext_spec(spec: str) -> tuple[str, str]:
    """(LANG, ROOT) of gettext:LANG[:ROOT]."""
    lang, _, root = spec[len("gettext:"):].partition(":")
    return lang, os.path.expanduser(root) if root else gettext_catalogs.DEFAULT_ROOT


def _band(bucket: int, val_fraction: float, dev: bool) -> str:
    """The split of a hash bucket (sources.split_bucket): 'eval' under val_fraction, or with
    dev the next val_fraction ('' for the eval band then: not read); 'train' above."""
    if bucket < val_fraction * 1000:
        return "" if dev else "eval"
    if dev and bucket < 2 * val_fraction * 1000:
        return "eval"
    return "train"


def _sha1(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def _repeats(pair: tuple[str, str], seen: set[bytes]) -> bool:
    """Whether pair was seen before (by a 16-byte hash of both sides); remembers it."""
    digest = content_hash(f"{len(pair[0])}\t{pair[0]}\t{pair[1]}")
    if digest in seen:
        return True
    seen.add(digest)
    return False


def _filtered(rows: Iterable[tuple[str, str, str, str]], max_examples: int
              ) -> Iterator[tuple[str, str, str, str]]:
    """(split, reason, source, target) rows, train's first, with repeats (of any earlier kept
    pair) marked duplicate and kept train pairs past max_examples (0 = none) marked capped."""
    seen: set[bytes] = set()
    kept = 0
    for split, reason, source, target in rows:
        if not reason and _repeats((source, target), seen):
            reason = "duplicate"
        if not reason and split == "train":
            kept += 1
            if max_examples and kept > max_examples:
                reason = "max_examples"
        yield split, reason, source, target


def _cap(rows: list[list], max_examples: int) -> None:
    """Mark kept rows [reason, ...] past the first max_examples (0 = none) as capped."""
    kept = 0
    for row in rows:
        if not row[0]:
            kept += 1
            if max_examples and kept > max_examples:
                row[0] = "max_examples"


# ---------------------------------------------------------------- stdlib_docstrings


@dataclasses.dataclass(frozen=True)
class Example:
    """One documented function of the stdlib; `dropped` names the filter that removed it."""
    path: str  # relative to the stdlib root, "/"-separated
    line: int  # 1-based line of its `def`
    split: str  # "train" or "eval"
    source: str
    target: str
    dropped: str = ""


def docstring_examples(stdlib_dir: str | None = None, val_fraction: float = 0.05,
                       dev: bool = False) -> list[Example]:
    """Every documented function of the stdlib at stdlib_dir (default: this Python's), dropped
    ones included; in order of path and line, duplicates marked in train-then-eval order. With
    dev, eval is the dev band and the eval band's functions have split "unread"."""
    from llmjax.data.stdlib_corpus import iter_documents  # imports tfds: only for this spec

    found = []
    for path, text in iter_documents(stdlib_dir):
        if not is_library_module(path):
            continue
        found.extend(_file_examples(path, text, ""))
    group = file_groups(found)
    rows = [dataclasses.replace(ex, split=_band(sources.split_bucket(group[ex.path]), val_fraction,
                                                 dev) or "unread") for ex in found]
    seen: set[bytes] = set()
    for split in ("train", "eval"):
        for i, ex in enumerate(rows):
            if ex.split == split and not ex.dropped and _repeats((ex.source, ex.target), seen):
                rows[i] = dataclasses.replace(ex, dropped="duplicate")
    return rows


def stdlib_docstrings(stdlib_dir: str | None = None, val_fraction: float = 0.05,
                      max_examples: int = 0) -> Pairs:
    """The embedded task built from the stdlib at stdlib_dir (default: this Python's)."""
    stream = PairStream("stdlib_docstrings", functools.partial(
        _stdlib_rows, stdlib_dir=stdlib_dir, val_fraction=val_fraction, max_examples=max_examples))
    texts: dict[str, list[tuple[str, str]]] = {"train": [], "eval": []}
    for split, source, target in stream:
        texts[split].append((source, target))
    return Pairs(*([p[i] for p in texts[s]] for s in ("train", "eval") for i in (0, 1)),
                 stats=stream.stats)


def file_groups(examples: Iterable[Example]) -> dict[str, str]:
    """Each file's group: the first path (sorted) of the files linked, directly or through
    others, by the normalised summary (gettext_catalogs.normalise) of a function the filters
    keep (duplicates too, so docstring_examples' result gives its own groups). Splitting by
    group keeps a file's sibling functions together and a summary on one side."""
    parent: dict[str, str] = {}

    def root(path: str) -> str:
        while parent.setdefault(path, path) != path:
            parent[path] = path = parent[parent[path]]
        return path

    first: dict[str, str] = {}
    for ex in examples:
        root(ex.path)
        if ex.dropped in ("", "duplicate"):
            other = first.setdefault(normalise(ex.target), ex.path)
            a, b = sorted((root(ex.path), root(other)))
            parent[b] = a
    return {path: root(path) for path in parent}


def _stdlib_rows(extra: dict, stdlib_dir: str | None = None, val_fraction: float = 0.05,
                 max_examples: int = 0, dev: bool = False) -> Iterator[tuple[str, str, str, str]]:
    """(split, reason, source, target) of every documented function, train's first, in
    example_order; extra gets the files per split."""
    examples = docstring_examples(stdlib_dir, val_fraction, dev)
    by_split: dict[str, list[list]] = {"train": [], "eval": []}
    for ex in sorted(examples, key=example_order):
        if ex.split in by_split:
            by_split[ex.split].append([ex.dropped, ex.source, ex.target])
    _cap(by_split["train"], max_examples)
    files = {s: len({e.path for e in examples if e.split == s}) for s in by_split}
    if not files["train"] or not files["eval"]:
        root = stdlib_dir or sysconfig.get_paths()["stdlib"]
        raise ValueError(f"stdlib_docstrings: {root} gives {files['train']} train and "
                         f"{files['eval']} eval files with documented functions: run on a full "
                         "CPython, or use pairs: or tfds:")
    extra.update({s: {"files": n} for s, n in files.items()})
    del examples
    for split, rows in by_split.items():
        for reason, source, target in rows:
            yield split, reason, source, target


def example_order(ex: Example) -> str:
    """The order of both splits: sha1("path:line"), so a prefix is a fair sample of the library."""
    return _sha1(f"{ex.path}:{ex.line}")


def is_library_module(path: str) -> bool:
    """Whether a stdlib path ("/"-separated, relative to the root) is a .py file of library code:
    not a test nor one of the two applications (the module docstring's `files`), whose
    docstrings would not describe library functions. The stdlib docstring tasks read only these."""
    *dirs, name = path.split("/")
    return (name.endswith(".py") and not name.startswith("test_")
            and not any(d in _NOT_LIBRARY_DIRS for d in dirs))


def _file_examples(path: str, text: str, split: str) -> list[Example]:
    """The documented functions of one file; a file that does not parse gives none."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")  # ast counts lines this way
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):  # deliberately broken files (e.g. bad encodings) exist
        return []
    lines = text.split("\n")
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc is not None:
                source, dropped = _source(node, lines)
                target = _summary(doc)
                dropped = dropped or _drop_reason(node, source, target)
                out.append(Example(path, node.lineno, split, source, target, dropped))
    return sorted(out, key=lambda e: e.line)


def _source(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> tuple[str, str]:
    """(the definition with decorators, dedented, docstring lines removed; drop reason or '')."""
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    doc = node.body[0]
    before = lines[doc.lineno - 1].encode()[:doc.col_offset].decode(errors="replace")
    after = lines[doc.end_lineno - 1].encode()[doc.end_col_offset:].decode(errors="replace")
    rest = after.strip()
    if before.strip() or (rest and not rest.startswith("#")):
        return "", "inline_docstring"
    body = lines[doc.end_lineno:node.end_lineno]
    while body and not body[0].strip():  # the blank line a docstring is usually followed by
        body = body[1:]
    return textwrap.dedent("\n".join(lines[first - 1:doc.lineno - 1] + body)), ""


def _summary(doc: str) -> str:
    """The first paragraph on one line, cut after its first sentence."""
    paragraph = _BLANK_LINE.split(doc.strip(), maxsplit=1)[0]
    line = " ".join(paragraph.split())
    return _SENTENCE_END.split(line, maxsplit=1)[0]


def _drop_reason(node: ast.FunctionDef | ast.AsyncFunctionDef, source: str, target: str) -> str:
    """The first filter (after inline_docstring) that drops this function, or ''."""
    if len(target.split()) < MIN_TARGET_WORDS:
        return "short_target"
    if _trivial(node.body[1:]):
        return "trivial_body"
    if len(source) > MAX_SOURCE_CHARS:
        return "long_source"
    return ""


def _trivial(body: list[ast.stmt]) -> bool:
    """Nothing, `pass`, `...` or `raise NotImplementedError[(...)]`: nothing to summarise."""
    if not body:
        return True
    if len(body) > 1:
        return False
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return True
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant):
        return stmt.value.value is Ellipsis
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


# ---------------------------------------------------------------- pairs:GLOB


def _match(spec: str) -> list[str]:
    pattern = os.path.expanduser(spec[len("pairs:"):])
    return sorted(f for f in glob.glob(pattern, recursive=True) if os.path.isfile(f))


def _file_rows(spec: str, val_fraction: float, max_examples: int, log: Callable[[str], None],
               dev: bool = False) -> Callable[[dict], Iterator[tuple[str, str, str, str]]]:
    """The rows of every file, split by file (10+ files) or by the tail of the lines (with dev:
    the val_fraction of lines before that tail), filtered.

    The split is decided once, by a first pass that counts each file's pairs (and checks its
    lines); every iteration then streams the files line by line.
    """
    root = sources.glob_root(os.path.expanduser(spec[len("pairs:"):]))
    paths = _match(spec)
    plan: dict = {}

    def decide() -> dict:
        counts = [sum(1 for _ in _read_pairs(f)) for f in paths]
        if not any(counts):
            raise ValueError(f"spec={spec!r}: the {len(paths)} matched files hold no pairs: add "
                             "source<TAB>target lines")
        if len(paths) >= sources.MIN_FILES_FOR_HASH_SPLIT:
            held = [_band(sources.split_bucket(os.path.relpath(f, root).replace(os.sep, "/")),
                          val_fraction, dev) for f in paths]
            n_eval = sum(c for c, h in zip(counts, held) if h == "eval")
            if n_eval and sum(c for c, h in zip(counts, held) if h == "train"):
                return {"held": held}
            log(f"data {spec}: the by-file split of {len(paths)} files held out "
                f"{n_eval} pairs; holding out the last {val_fraction:.0%} of the lines instead")
        total = sum(counts)
        end = int(total * (1 - val_fraction)) if dev else total  # dev: eval's lines unread
        cut = int(total * (1 - (2 if dev else 1) * val_fraction))
        if not (cut and end - cut):
            raise ValueError(f"spec={spec!r}: {total} pairs leave {cut} for train and "
                             f"{end - cut} for {'dev' if dev else 'eval'} at val_fraction="
                             f"{val_fraction}: add pairs or change val_fraction")
        return {"cut": cut, "end": end}

    def rows() -> Iterator[tuple[str, str, str, str]]:
        if not plan:
            plan.update(decide())
        if "held" in plan:
            for split in ("train", "eval"):
                for path, held in zip(paths, plan["held"]):
                    if held == split:
                        for reason, source, target in _read_pairs(path):
                            yield split, reason, source, target
            return
        n = 0
        for path in paths:
            for reason, source, target in _read_pairs(path):
                if n < plan["end"]:
                    yield "train" if n < plan["cut"] else "eval", reason, source, target
                n += 1

    return lambda extra: _filtered(rows(), max_examples)


def _read_pairs(path: str) -> Iterator[tuple[str, str, str]]:
    """(reason, source, target) of each non-blank line, streamed; a line without exactly one
    tab fails."""
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.count("\t") != 1:
                raise ValueError(f"{path}:{number}: {line.count(chr(9))} tabs, a pairs: line must "
                                 "be source<TAB>target with exactly one tab: replace tabs inside "
                                 "the texts (e.g. by spaces)")
            source, target = (side.strip() for side in line.split("\t"))
            yield "" if source and target else "empty", source, target


# ---------------------------------------------------------------- gettext:


def _gettext_rows(spec: str, val_fraction: float, dev: bool, max_examples: int,
                  log: Callable[[str], None]) -> Callable[[dict], Iterator[tuple[str, str, str, str]]]:
    """The catalogs read, split and measured at the first iteration; their rows at each."""
    lang, root = gettext_spec(spec)
    plan: dict = {}

    def build() -> None:
        start = time.time()
        rows, facts = gettext_catalogs.read_corpus(lang, root)
        by_split: dict[str, list[tuple[str, str, str, str]]] = {"train": [], "eval": []}
        for reason, source, target in sorted(rows, key=lambda r: _sha1(r[1])):
            split = _band(sources.split_bucket(gettext_catalogs.normalise(source)), val_fraction, dev)
            if split:
                by_split[split].append((split, reason, source, target))
        kept = {s: [r[2] for r in rs if not r[1]] for s, rs in by_split.items()}
        if not kept["train"] or not kept["eval"]:
            raise ValueError(f"spec={spec!r}: {len(kept['train'])} train and {len(kept['eval'])} "
                             f"eval pairs at val_fraction={val_fraction}: add catalogs or change "
                             "val_fraction")
        near = gettext_catalogs.near_duplicates(kept["train"], kept["eval"])
        if facts["skipped"]:
            log(f"data {spec}: skipped {len(facts['skipped'])} unreadable catalogs: "
                + "; ".join(facts["skipped"]))
        log(f"data {spec}: {facts['catalogs']} catalogs read and measured in "
            f"{time.time() - start:.1f}s")
        plan.update(rows=by_split["train"] + by_split["eval"], extra={
            "eval": {"near_duplicates": near},
            "catalogs": {"read": facts["catalogs"], "skipped": facts["skipped"],
                         "plural_kept": facts["plural_kept"], "context_kept": facts["context_kept"]}})

    def rows(extra: dict) -> Iterator[tuple[str, str, str, str]]:
        if not plan:
            build()
        extra.update(plan["extra"])
        yield from _filtered(plan["rows"], max_examples)

    return rows


# ---------------------------------------------------------------- tfds:


def _tfds_rows(spec: str, data_dir: str, source_key: str, target_key: str, train_split: str,
               eval_split: str, max_examples: int
               ) -> Callable[[dict], Iterator[tuple[str, str, str, str]]]:
    """The builder opened and checked now; the rows of both splits read at each iteration."""
    builder = sources.open_prepared(spec[len("tfds:"):], data_dir, f"spec={spec!r}")
    eval_split = eval_split or sources.default_eval_split(builder)
    sources.check_split(builder, train_split, "train_split")
    sources.check_split(builder, eval_split, "eval_split")
    source_key, target_key = _keys(builder, source_key, target_key)

    def rows(extra: dict) -> Iterator[tuple[str, str, str, str]]:
        for role, split, limit in (("train", train_split, max_examples), ("eval", eval_split, 0)):
            n = 0
            for _, record in sources.read_records(builder, split, limit):
                source = sources.as_text(record[source_key], f"source_key={source_key!r}")
                target = sources.as_text(record[target_key], f"target_key={target_key!r}")
                empty = role == "train" and not (source.strip() and target.strip())
                n += 1
                yield role, "empty" if empty else "", source, target
            if not n:
                raise ValueError(f"{role}_split={split!r}: {sources.dataset_name(builder)} has "
                                 "no examples there: pick another split")

    return rows


def _keys(builder, source_key: str, target_key: str) -> tuple[str, str]:
    """(source, target) Text features: the ones given, else the builder's supervised_keys."""
    import tensorflow_datasets as tfds

    name = sources.dataset_name(builder)
    features = builder.info.features  # a FeaturesDict (a Translation is one too)
    texts = ", ".join(k for k, f in features.items() if isinstance(f, tfds.features.Text)) or "none"
    supervised = builder.info.supervised_keys
    plain = (isinstance(supervised, tuple) and len(supervised) == 2
             and all(isinstance(k, str) for k in supervised))
    if not (source_key and target_key) and not plain:
        raise ValueError(f"{name} has no (source, target) supervised_keys: set source_key and "
                         f"target_key; Text features: {texts}")
    keys = (source_key or supervised[0], target_key or supervised[1])
    for what, key in zip(("source_key", "target_key"), keys):
        if key not in features or not isinstance(features[key], tfds.features.Text):
            raise ValueError(f"{what}={key!r}: {name} has no such Text feature; Text features: "
                             f"{texts}")
    return keys
