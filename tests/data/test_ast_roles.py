"""The embedded token-labelling task: identifier roles from the AST, chunks, the split by file
and the removal of near-duplicate files."""
import numpy as np
import pytest

from llmjax.data import ast_roles
from llmjax.data.ast_roles import TAG_NAMES, chunks, label_source, near_duplicates, rows

SNIPPET = '''import os.path as osp, sys
from collections import OrderedDict, deque as dq

@decorator
class Box(Base):
    """A box.

    It holds items."""
    def put(self, item, *rest, key=None, **kw):
        total = len(item)
        self.items.append(item)
        self.count += 1
        for x in rest:
            put(x, key=key)
        return sorted(rest, key=lambda v: v.size), é_name.größe, total
'''


def _tagged(text):
    spans_Nx2, tags = label_source(text)
    return [(text[s:e], TAG_NAMES[t]) for (s, e), t in zip(spans_Nx2.tolist(), tags)]


def test_every_role_from_the_ast():
    words = _tagged(SNIPPET)
    roles = [(w, t) for w, t in words if t != "O"]
    assert roles == [
        ("osp", "B-import"), ("sys", "B-import"), ("OrderedDict", "B-import"), ("dq", "B-import"),
        ("Box", "B-class"), ("put", "B-def"),
        ("self", "B-param"), ("item", "B-param"), ("rest", "B-param"), ("key", "B-param"), ("kw", "B-param"),
        ("total", "B-assign"), ("len", "B-call"), ("items", "B-attr"), ("append", "B-call"),
        ("count", "B-attr"), ("x", "B-assign"), ("put", "B-call"), ("key", "B-kwarg"), ("sorted", "B-call"),
        ("key", "B-kwarg"), ("v", "B-param"), ("size", "B-attr"), ("größe", "B-attr")]
    assert {t for _, t in roles} == set(TAG_NAMES) - {"O"}
    # The same name in different roles (what a lexer cannot tell): put defined then called, key a
    # parameter, a keyword, read (O) as that keyword's value; item a parameter then read (O).
    by_word = {}
    for w, t in words:
        by_word.setdefault(w, []).append(t)
    assert by_word["put"] == ["B-def", "B-call"]
    assert by_word["key"] == ["B-param", "B-kwarg", "O", "B-kwarg"]
    assert by_word["item"] == ["B-param", "O", "O"] and by_word["total"] == ["B-assign", "O"]
    # The words are the source's tokens, comments and keywords included; markers are not words.
    assert [w for w, _ in words[:4]] == ["import", "os", ".", "path"]
    assert '"""A box.\n\n    It holds items."""' in [w for w, _ in words]
    assert all(w.strip() == w and w for w, _ in words)
    assert label_source("def broken(:\n") is None


def test_chunks_keep_tokens_whole_and_read_back(monkeypatch):
    monkeypatch.setattr(ast_roles, "CHUNK_CHARS", 120)
    spans_Nx2, tags = label_source(SNIPPET)
    out, long_blocks = chunks(SNIPPET, spans_Nx2, tags)
    assert long_blocks == 0 and len(out) >= 3
    words = {SNIPPET[s:e] for s, e in spans_Nx2.tolist()}
    seen = []
    for line, text, chunk_spans, chunk_tags in out:
        assert len(text) <= 120 and text == text.strip("\n")
        assert SNIPPET.split("\n")[line - 1] == text.split("\n")[0]  # line numbers are 1-based
        assert len(chunk_spans) == len(chunk_tags)
        seen += [(text[s:e], TAG_NAMES[t]) for (s, e), t in zip(chunk_spans.tolist(), chunk_tags)]
    assert seen == _tagged(SNIPPET) and {w for w, _ in seen} == words  # every word once, in order
    assert any('"""A box.' in text and 'items."""' in text for _, text, _, _ in out)  # not cut
    monkeypatch.setattr(ast_roles, "CHUNK_CHARS", 30)  # the docstring alone is longer: left out
    out, long_blocks = chunks(SNIPPET, spans_Nx2, tags)
    assert long_blocks >= 1 and not any('"""' in text for _, text, _, _ in out)


def _module(i):
    """A small module of its own (no line shared with another)."""
    return "\n".join(f"def f{i}_{j}(a{j}):\n    v{i}_{j} = a{j} + {i}\n    return g{i}(v{i}_{j}, k={j})"
                     for j in range(12)) + "\n"


def test_near_duplicate_files_are_dropped_before_the_split():
    texts = {f"pkg/m{i}.py": _module(i) for i in range(20)}
    copy = texts["pkg/m3.py"].replace("+ 3\n    return g3(v3_5", "+ 4\n    return g3(v3_5")  # one line differs
    texts["pkg/copy.py"] = copy
    dropped = near_duplicates(texts)
    assert list(dropped.items()) in ([("pkg/copy.py", "pkg/m3.py")], [("pkg/m3.py", "pkg/copy.py")])
    extra = {}
    got = list(rows(extra, texts=texts))
    assert extra["near_duplicates"] == dropped
    (gone,) = dropped
    assert not any(r[1].startswith(gone + ":") for r in got)
    assert near_duplicates({k: v for k, v in texts.items() if k != "pkg/copy.py"}) == {}


def test_split_by_file_deterministic_and_ordered():
    texts = {f"pkg/m{i}.py": _module(i) for i in range(20)}
    extra = {}
    got = list(rows(extra, texts=texts))
    files = {split: {r[1].rsplit(":", 1)[0] for r in got if r[0] == split} for split in ("train", "eval")}
    assert files["train"] and files["eval"] and not files["train"] & files["eval"]
    assert extra["files"] == {"train": len(files["train"]), "eval": len(files["eval"])}
    n_eval = sum(r[0] == "eval" for r in got)
    assert 0 < n_eval <= 2 * ast_roles.EVAL_FRACTION * len(got)
    assert [r[0] for r in got] == sorted(r[0] for r in got)[::-1]  # train's rows first
    ids = [r[1] for r in got if r[0] == "train"]
    assert ids == sorted(ids, key=ast_roles._sha1)
    again = list(rows({}, texts=dict(reversed(list(texts.items())))))
    assert [(r[0], r[1], r[2]) for r in again] == [(r[0], r[1], r[2]) for r in got]
    for _, _, text, spans_Nx2, tags in got:
        assert spans_Nx2.dtype == np.int32 and len(tags) == len(spans_Nx2)
    assert len(list(rows({}, texts=texts, max_examples=5))) == 5 + n_eval


@pytest.fixture(scope="module")
def stdlib_rows():
    extra = {}
    return list(rows(extra)), extra


def test_the_embedded_task_on_this_python(stdlib_rows):
    got, extra = stdlib_rows
    counts = {s: np.bincount([t for r in got if r[0] == s for t in r[4]], minlength=len(TAG_NAMES))
              for s in ("train", "eval")}
    assert (counts["train"] > 0).all() and (counts["eval"] > 0).all()  # every role in both splits
    assert extra["files"]["train"] > 50 and extra["files"]["eval"] > 10 and not extra["unparsable"]
    assert sum(r[0] == "train" for r in got) > 3000
    assert max(len(r[2]) for r in got) <= ast_roles.CHUNK_CHARS
