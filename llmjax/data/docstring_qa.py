"""The embedded extractive-QA task, offline and real: find a function's docstring summary in a
stretch of standard-library source.

Decided once so that the task means the same on every machine with this Python:
  files     the stdlib's .py files of llmjax.data.pairs' stdlib_docstrings (tests and the two
            applications left out), newlines as "\\n".
  contexts  each file cut into stretches: its blank-line-separated blocks of lines packed in
            order while a stretch stays within CONTEXT_CHARS characters (a longer block is cut
            into runs of whole lines). At about 3.5 characters a token, a stretch fills one to
            two 256-token windows.
  examples  each function (methods and nested functions too) with a docstring whose `def` line
            and summary lie in one stretch: question TEMPLATE with the function's name, context
            the stretch, answer the docstring's summary as the source spells it (first paragraph
            cut after its first sentence, line breaks and indentation kept), so the answer's
            character span is exact.
  filters   each dropped function counts under the first reason that applies (DROP_REASONS): the
            literal is not a plain string or its summary has a backslash (the source text would
            not be the docstring), a summary under MIN_ANSWER_WORDS words or over MAX_ANSWER_CHARS
            characters, the def and the summary in different stretches, the name defined twice in
            the stretch (a property's getter and setter: the question is ambiguous), the answer
            inside the question (after SQuAD's normalisation).
  split     by file group as stdlib_docstrings (pairs.file_groups over the kept summaries), so a
            file's functions are on one side and no summary is on both; eval is the hash band
            under val_fraction (sources.is_validation).
  order     both splits in order of sha1("path:line"), so a prefix is a fair sample.

The baseline a model must beat (llmjax.tasks.qa) is the first sentence after the first mention of
NAME in the context (`baseline_answer`).
"""
from __future__ import annotations

import ast
import collections
import re
from collections.abc import Iterator

from llmjax.data import pairs, sources
from llmjax.evaluation.squad import normalize_answer

SPEC = "stdlib_docstring_qa"
TEMPLATE = "What does {name} do?"
CONTEXT_CHARS = 1500
MIN_ANSWER_WORDS = 3
MAX_ANSWER_CHARS = 200
DROP_REASONS = ("not_plain_text", "short_answer", "long_answer", "split_by_context",
                "ambiguous_name", "answer_in_question")
_QUOTES = re.compile(r"[rRuU]?(\"\"\"|'''|\"|')")
_PARAGRAPH_END = re.compile(r"\n[ \t]*\n")
_SENTENCE_END = re.compile(r"[.!?](?=\s+[A-Z])")
_BASELINE_END = re.compile(r"[.!?](?=[\s\"']|$)|\n[ \t]*\n")
_NAME = re.compile(r"What does (\w+) do\?")


def rows(extra: dict, stdlib_dir: str | None = None, val_fraction: float = 0.1,
         max_examples: int = 0) -> Iterator[tuple[str, str, str, str, tuple[tuple[int, str], ...]]]:
    """(split, id, question, context, ((answer_start, answer),)) of every kept function, train's
    first, each split in order of sha1("path:line"); extra gets the counts (files, contexts,
    dropped per reason)."""
    from llmjax.data.stdlib_corpus import (
        iter_documents,  # imports tfds: only for this spec
    )

    found: list[tuple[pairs.Example, str, str, int, str]] = []
    for path, text in iter_documents(stdlib_dir):
        if pairs.is_library_module(path):
            found.extend(file_examples(path, text))
    group = pairs.file_groups(ex for ex, *_ in found)
    by_split: dict[str, list] = {"train": [], "eval": []}
    dropped = collections.Counter(ex.dropped for ex, *_ in found if ex.dropped)
    for ex, question, context, start, answer in sorted(found, key=lambda f: pairs.example_order(f[0])):
        if not ex.dropped:
            split = "eval" if sources.is_validation(group[ex.path], val_fraction) else "train"
            by_split[split].append((f"{ex.path}:{ex.line}", question, context, ((start, answer),), ex.path))
    if max_examples:
        dropped["max_examples"] = max(0, len(by_split["train"]) - max_examples)
        by_split["train"] = by_split["train"][:max_examples]
    extra.update({"files": {s: len({r[4] for r in by_split[s]}) for s in by_split},
                  "contexts": {s: len({r[2] for r in by_split[s]}) for s in by_split},
                  "dropped": {r: dropped[r] for r in (*DROP_REASONS, "max_examples") if dropped[r]}})
    for split, kept in by_split.items():
        for example_id, question, context, answers, _ in kept:
            yield split, example_id, question, context, answers


def file_examples(path: str, text: str) -> list[tuple[pairs.Example, str, str, int, str]]:
    """(Example with path, line, target = the summary on one line, dropped; question; context;
    answer start in the context; answer) of every documented function of one file, in line order;
    a file that does not parse gives none."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.split("\n")
    line_starts = [0]
    for line in lines:
        line_starts.append(line_starts[-1] + len(line) + 1)
    stretches = context_stretches(text)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or ast.get_docstring(node) is None:
            continue
        doc = node.body[0]
        begin = line_starts[doc.lineno - 1] + _chars(lines[doc.lineno - 1], doc.col_offset)
        end = line_starts[doc.end_lineno - 1] + _chars(lines[doc.end_lineno - 1], doc.end_col_offset)
        start, answer, dropped = summary_span(text, begin, end, doc.value.value)
        def_at = line_starts[node.lineno - 1]
        question = TEMPLATE.format(name=node.name)
        where = next(((a, b) for a, b in stretches if a <= def_at < b), (0, 0))
        if not dropped and not where[0] <= start <= start + len(answer) <= where[1]:
            dropped = "split_by_context"
        context = text[where[0]:where[1]]
        if not dropped and len(re.findall(rf"\bdef\s+{node.name}\b", context)) > 1:
            dropped = "ambiguous_name"
        if not dropped and normalize_answer(answer) in normalize_answer(question):
            dropped = "answer_in_question"
        target = " ".join(answer.split())
        out.append((pairs.Example(path, node.lineno, "", "", target, dropped), question, context,
                    start - where[0], answer))
    return sorted(out, key=lambda e: e[0].line)


def _chars(line: str, byte_offset: int) -> int:
    """ast's UTF-8 byte column as a character index of the line."""
    return len(line.encode("utf-8")[:byte_offset].decode("utf-8", errors="ignore"))


def summary_span(text: str, begin: int, end: int, value: str) -> tuple[int, str, str]:
    """(start, summary, drop reason or '') of the docstring literal text[begin:end] whose value is
    value: its first paragraph cut after the first sentence, as the source spells it."""
    quote = _QUOTES.match(text, begin, end)
    if not quote or not text.endswith(quote.group(1), begin, end):
        return 0, "", "not_plain_text"
    body_start, body_end = quote.end(), end - len(quote.group(1))
    try:
        plain = ast.literal_eval(text[begin:end]) == value
    except (SyntaxError, ValueError):
        plain = False
    start = body_start + len(text[body_start:body_end]) - len(text[body_start:body_end].lstrip())
    paragraph = _PARAGRAPH_END.search(text, start, body_end)
    stop = paragraph.start() if paragraph else body_end
    sentence = _SENTENCE_END.search(text, start, stop)
    stop = sentence.end() if sentence else stop
    answer = text[start:stop].rstrip()
    if not plain or "\\" in answer:
        return start, answer, "not_plain_text"
    if len(answer.split()) < MIN_ANSWER_WORDS:
        return start, answer, "short_answer"
    if len(answer) > MAX_ANSWER_CHARS:
        return start, answer, "long_answer"
    return start, answer, ""


def context_stretches(text: str) -> list[tuple[int, int]]:
    """[start, end) character spans cutting text into stretches (see the module docstring)."""
    blocks, start = [], 0
    for m in re.finditer(r"\n[ \t]*\n(?:[ \t]*\n)*", text):  # a block ends after its blank lines
        blocks.append((start, m.end()))
        start = m.end()
    if start < len(text):
        blocks.append((start, len(text)))
    pieces = []
    for a, b in blocks:
        while b - a > CONTEXT_CHARS:  # whole lines up to CONTEXT_CHARS (at least one line)
            cut = text.rfind("\n", a, a + CONTEXT_CHARS) + 1
            cut = cut if cut > a else text.find("\n", a + 1, b) + 1 or b
            pieces.append((a, cut))
            a = cut
        if b > a:
            pieces.append((a, b))
    stretches: list[tuple[int, int]] = []
    for a, b in pieces:
        if stretches and b - stretches[-1][0] <= CONTEXT_CHARS:
            stretches[-1] = (stretches[-1][0], b)
        else:
            stretches.append((a, b))
    return stretches


def question_name(question: str) -> str | None:
    """The function a TEMPLATE question names (None for another question)."""
    m = _NAME.fullmatch(question)
    return m.group(1) if m else None


def baseline_answer(name: str, context: str) -> str:
    """The first sentence after the first mention of name (a whole word) in context: from the
    next word character to the first [.!?] before whitespace, a quote or the end, or to a blank
    line ('' when name is not mentioned)."""
    mention = re.search(rf"\b{re.escape(name)}\b", context)
    if not mention:
        return ""
    begin = re.compile(r"\w").search(context, mention.end())
    if not begin:
        return ""
    end = _BASELINE_END.search(context, begin.start())
    if not end:
        return context[begin.start():]
    return context[begin.start():end.start() + (end.group(0)[0] in ".!?")]
