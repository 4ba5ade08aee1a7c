"""The embedded token-labelling task: the role of every identifier in standard-library code.

Offline and real, read from the running Python like llmjax.data.labelled's stdlib_packages:

  files     the .py files of labelled.PACKAGES (the 10 largest standard-library packages, tests
            left out), found as labelled.py finds them; CRLF and CR read as LF.
  words     the source's own tokens from `tokenize` (names, keywords, operators, numbers, strings,
            comments; not the NEWLINE/NL/INDENT/DEDENT/ENDMARKER markers): the text is the real
            source, so the model reads code.
  roles     from the file's AST, each identifier occurrence (ROLES):
              def      the name of a function being defined (def / async def)
              class    the name of a class being defined
              param    a parameter (of a def or a lambda, *args and **kwargs included)
              assign   a name bound by assignment (=, +=, annotated, for, with ... as, :=,
                       comprehension targets)
              call     the name called: f in f(...), m in x.m(...)
              attr     an attribute not called: a in x.a, x.a = 1
              import   a name an import binds (the alias after `as`, else the first part of
                       `import a.b`, or the name of `from m import name`)
              kwarg    a keyword argument's name: k in f(k=1)
            Everything else is "O" (keywords, operators, names read, strings, except-as names).
            A lexer alone cannot assign them: the same name is a call in one place, an
            assignment or an attribute in another. Tags are BIO with every identifier a
            one-word span "B-role", so seqeval's span scores apply (llmjax.evaluation.spans).
  examples  chunks of consecutive lines of at most CHUNK_CHARS characters (sized to fill a
            128-token row of the project's sentencepiece tokenizer; a longer row is cut and the
            task counts the words cut), never cutting a token that spans lines (a docstring):
            a block of lines joined by such a token that alone passes CHUNK_CHARS is left out
            (counted in stats as long_blocks). Leading and trailing blank lines are left out;
            a chunk without a word is dropped.
  near duplicates  files whose line shingles (every SHINGLE_LINES consecutive non-blank lines,
            stripped) overlap an earlier kept file's with Jaccard >= NEAR_DUPLICATE_JACCARD are
            dropped before the split (files in order of sha1(path)), so no copy of a train file
            is evaluated; stats["near_duplicates"] names each dropped file and the file it copies.
  split     by file: files in order of sha1(path) go to eval while eval stays under
            EVAL_FRACTION of the examples (a file that would take it past twice that is skipped),
            labelled.py's rule over the whole set; so no file is in both splits.
  order     both splits in order of sha1("path:line"), so a prefix is a fair sample.

Shape key: N words.
"""
from __future__ import annotations

import ast
import bisect
import hashlib
import io
import keyword
import sysconfig
import token as token_lib
import tokenize
from collections.abc import Iterator

import numpy as np

ROLES = ("def", "class", "param", "assign", "call", "attr", "import", "kwarg")
TAG_NAMES = ("O", *(f"B-{r}" for r in ROLES))
CHUNK_CHARS = 360
EVAL_FRACTION = 0.2
SHINGLE_LINES = 4
NEAR_DUPLICATE_JACCARD = 0.5
_NOT_WORDS = frozenset((token_lib.NEWLINE, token_lib.NL, token_lib.INDENT, token_lib.DEDENT,
                        token_lib.ENDMARKER, token_lib.ENCODING))

Row = tuple[str, str, str, np.ndarray, list[int]]  # (split, id, text, spans_Nx2, tags)


class _Positions:
    """(row, column) of tokenize and of the AST (UTF-8 byte columns) as offsets into the text."""

    def __init__(self, text: str):
        self.lines = text.split("\n")
        self.starts = np.concatenate([[0], np.cumsum([len(s) + 1 for s in self.lines])]).tolist()

    def offset(self, row: int, col: int) -> int:
        return self.starts[row - 1] + col

    def ast_offset(self, row: int, byte_col: int) -> int:
        line = self.lines[row - 1]
        col = byte_col if line.isascii() else len(line.encode("utf-8")[:byte_col].decode("utf-8", "ignore"))
        return self.offset(row, col)


def label_source(text: str) -> tuple[np.ndarray, list[int]] | None:
    """The words of a module's source (spans_Nx2 int32 character spans, in order) and the index
    in TAG_NAMES of each word's tag; None when the source does not parse or tokenize."""
    try:
        tree = ast.parse(text)
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (SyntaxError, ValueError, tokenize.TokenError):
        return None
    pos = _Positions(text)
    spans, names = [], []  # names: whether the word is an identifier (a role may land on it)
    for tok in tokens:
        if tok.type in _NOT_WORDS:
            continue
        s, e = pos.offset(*tok.start), pos.offset(*tok.end)
        if text[s:e] != tok.string:  # a token whose positions do not read back: not a word
            continue
        spans.append((s, e))
        names.append(tok.type == token_lib.NAME and not keyword.iskeyword(tok.string))
    spans_Nx2 = np.asarray(spans, np.int32).reshape(-1, 2)
    by_start = {s: i for i, (s, _) in enumerate(spans) if names[i]}
    by_end = {e: i for i, (_, e) in enumerate(spans) if names[i]}
    roles: dict[int, str] = {}

    def at_start(node, role: str) -> None:
        i = by_start.get(pos.ast_offset(node.lineno, node.col_offset))
        if i is not None:
            roles[i] = role

    def at_end(node, role: str) -> None:
        i = by_end.get(pos.ast_offset(node.end_lineno, node.end_col_offset))
        if i is not None:
            roles[i] = role

    def defined(node, role: str) -> None:
        """The first identifier word equal to the name after the statement's start (decorators
        come before it: lineno is the def/class line)."""
        i = bisect.bisect_left(spans_Nx2[:, 0], pos.ast_offset(node.lineno, node.col_offset))
        while i < len(spans) and not (names[i] and text[spans[i][0]:spans[i][1]] == node.name):
            i += 1
        if i < len(spans):
            roles[i] = role

    calls = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            defined(node, "def")
        elif isinstance(node, ast.ClassDef):
            defined(node, "class")
        elif isinstance(node, ast.arg):
            at_start(node, "param")
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            at_start(node, "assign")
        elif isinstance(node, ast.Attribute):
            at_end(node, "attr")
        elif isinstance(node, ast.keyword) and node.arg is not None:
            at_start(node, "kwarg")
        elif isinstance(node, ast.alias):
            (at_end if node.asname else at_start)(node, "import")
        elif isinstance(node, ast.Call):
            calls.append(node.func)
    for func in calls:  # after the attributes: a method called is a call
        if isinstance(func, ast.Name):
            at_start(func, "call")
        elif isinstance(func, ast.Attribute):
            at_end(func, "call")
    index = {name: i for i, name in enumerate(TAG_NAMES)}
    tags = [index[f"B-{roles[i]}"] if i in roles else 0 for i in range(len(spans))]
    return spans_Nx2, tags


def chunks(text: str, spans_Nx2: np.ndarray, tags: list[int]
           ) -> tuple[list[tuple[int, str, np.ndarray, list[int]]], int]:
    """(first line, chunk text, its words' spans_Nx2 relative to it, their tags) of each chunk of
    a labelled source (see the module docstring), and the number of blocks left out as too long."""
    pos = _Positions(text)
    n_lines = len(pos.lines)
    first_row = np.searchsorted(pos.starts, spans_Nx2[:, 0], side="right")  # 1-based rows
    last_row = np.searchsorted(pos.starts, np.maximum(spans_Nx2[:, 1] - 1, spans_Nx2[:, 0]), side="right")
    joined = np.zeros(n_lines + 2, bool)  # joined[r]: line r continues a token of line r - 1
    for a, b in zip(first_row[first_row < last_row].tolist(), last_row[first_row < last_row].tolist()):
        joined[a + 1:b + 1] = True
    blocks, row = [], 1  # (first row, last row) of lines that must stay together
    while row <= n_lines:
        end = row
        while end < n_lines and joined[end + 1]:
            end += 1
        blocks.append((row, end))
        row = end + 1
    out, long_blocks, current = [], 0, []

    def size(rows: list[tuple[int, int]]) -> int:
        return pos.starts[rows[-1][1]] - 1 - pos.starts[rows[0][0] - 1]

    def emit(rows: list[tuple[int, int]]) -> None:
        lines = [r for a, b in rows for r in range(a, b + 1)]
        while lines and not pos.lines[lines[0] - 1].strip():
            lines.pop(0)
        while lines and not pos.lines[lines[-1] - 1].strip():
            lines.pop()
        if not lines:
            return
        start, end = pos.starts[lines[0] - 1], pos.starts[lines[-1]] - 1
        inside = (spans_Nx2[:, 0] >= start) & (spans_Nx2[:, 1] <= end)
        if inside.any():
            out.append((lines[0], text[start:end], (spans_Nx2[inside] - start).astype(np.int32),
                        [t for t, keep in zip(tags, inside.tolist()) if keep]))

    for block in blocks:
        if size([block]) > CHUNK_CHARS:
            long_blocks += bool(text[pos.starts[block[0] - 1]:pos.starts[block[1]] - 1].strip())
            if current:
                emit(current)
            current = []
            continue
        if current and size([current[0], block]) > CHUNK_CHARS:
            emit(current)
            current = []
        current.append(block)
    if current:
        emit(current)
    return out, long_blocks


def _shingles(text: str) -> set[bytes]:
    """8-byte hashes of every SHINGLE_LINES consecutive non-blank lines, stripped."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return {hashlib.sha1("\n".join(lines[i:i + SHINGLE_LINES]).encode("utf-8", "surrogatepass")).digest()[:8]
            for i in range(max(len(lines) - SHINGLE_LINES + 1, 1 if lines else 0))}


def near_duplicates(texts: dict[str, str]) -> dict[str, str]:
    """{dropped path: the kept path it copies}: files, in order of sha1(path), whose shingle
    Jaccard with an earlier kept file reaches NEAR_DUPLICATE_JACCARD (an inverted index from
    shingles to kept files counts the shared ones, so only overlapping pairs are compared)."""
    index: dict[bytes, list[str]] = {}
    sizes: dict[str, int] = {}
    dropped = {}
    for path in sorted(texts, key=_sha1):
        shingles = _shingles(texts[path])
        shared: dict[str, int] = {}
        for s in shingles:
            for other in index.get(s, ()):
                shared[other] = shared.get(other, 0) + 1
        jaccard = {o: n / (len(shingles) + sizes[o] - n) for o, n in shared.items()}
        best = max(jaccard, key=lambda o: (jaccard[o], _sha1(o)), default=None)
        if best is not None and jaccard[best] >= NEAR_DUPLICATE_JACCARD:
            dropped[path] = best
            continue
        sizes[path] = len(shingles)
        for s in shingles:
            index.setdefault(s, []).append(path)
    return dropped


def eval_files(examples_per_file: dict[str, int]) -> set[str]:
    """The eval files: in order of sha1(path), while eval stays under EVAL_FRACTION of the
    examples (a file that would take it past twice that is skipped)."""
    target = EVAL_FRACTION * sum(examples_per_file.values())
    chosen, held = set(), 0
    for path in sorted((p for p, n in examples_per_file.items() if n), key=_sha1):
        if held < target and held + examples_per_file[path] <= 2 * target:
            chosen.add(path)
            held += examples_per_file[path]
    return chosen


def _sha1(key: str) -> str:
    return hashlib.sha1(key.encode("utf-8")).hexdigest()


def source_files(stdlib_dir: str | None = None) -> dict[str, str]:
    """{path relative to the stdlib root: source, newlines as LF} of labelled.PACKAGES' files."""
    from llmjax.data.labelled import PACKAGES, _package_files

    root = stdlib_dir or sysconfig.get_paths()["stdlib"]
    return {path: text.replace("\r\n", "\n").replace("\r", "\n")
            for package in PACKAGES for path, text in _package_files(root, package)}


def rows(extra: dict, stdlib_dir: str | None = None, max_examples: int = 0,
         texts: dict[str, str] | None = None) -> Iterator[Row]:
    """The task's (split, id "path:line", text, spans_Nx2, tags) rows, train's first (built in
    memory: a few MB); extra gets the files per split, near duplicates, unparsable files and
    long blocks. texts replaces the standard library's files (tests)."""
    texts = source_files(stdlib_dir) if texts is None else texts
    duplicates = near_duplicates(texts)
    per_file, unparsable, long_blocks = {}, [], 0
    for path in sorted(texts):
        if path in duplicates:
            continue
        labelled = label_source(texts[path])
        if labelled is None:
            unparsable.append(path)
            continue
        per_file[path], n_long = chunks(texts[path], *labelled)
        long_blocks += n_long
    held = eval_files({p: len(c) for p, c in per_file.items()})
    by_split: dict[str, list] = {"train": [], "eval": []}
    for path, file_chunks in per_file.items():
        for line, text, spans_Nx2, tags in file_chunks:
            by_split["eval" if path in held else "train"].append((f"{path}:{line}", text, spans_Nx2, tags))
    for split in by_split:
        by_split[split].sort(key=lambda r: _sha1(r[0]))
    if max_examples:
        by_split["train"] = by_split["train"][:max_examples]
    extra.update({"files": {"train": sum(bool(c) for p, c in per_file.items() if p not in held),
                            "eval": len(held)},
                  "near_duplicates": duplicates, "unparsable": unparsable, "long_blocks": long_blocks})
    for split, split_rows in by_split.items():
        for row in split_rows:
            yield (split, *row)
