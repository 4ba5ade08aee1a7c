"""Extractive question answering data: (question, context, answers) per split, one stream type
for every source.

Three kinds of spec, one stream (`QAStream`), whose rows are
`(split, id, question, context, answers)` with answers a tuple of (char_start, text), text ==
context[char_start:char_start + len(text)]; train's rows before eval's:
  stdlib_docstring_qa  the embedded task, offline and real (llmjax.data.docstring_qa): a stretch
                       of a standard-library module's source, "What does NAME do?", the summary
                       of NAME's docstring
  squad_json:PATH      SQuAD v1.1-format JSON files; PATH holds `{split}`, filled with the two
                       names of task.splits (default train,dev: squad_json:/data/{split}-v1.1.json)
  tfds:squad[/CONFIG]  the tfds squad dataset prepared on disk (splits train,validation)

Every answer is checked as the stream passes (an answer outside its context, or whose text is not
the context's at its offset, is a one-line error naming the example id and the fix), and so is a
split without examples; eval keeps all gold answers (SQuAD's dev set has up to 3 per question, the
scores take the best), train uses the first.
"""
from __future__ import annotations

import dataclasses
import glob
import json
import os
from collections.abc import Callable, Iterator

from llmjax.config import UserError
from llmjax.data import docstring_qa

QA_SOURCES = (docstring_qa.SPEC, "squad_json:PATH", "tfds:squad[/CONFIG]")
DEFAULT_SPLITS = {docstring_qa.SPEC: ("train", "validation"), "squad_json": ("train", "dev"),
                  "tfds": ("train", "validation")}
Answers = tuple[tuple[int, str], ...]
QARow = tuple[str, str, str, str, Answers]  # (split, id, question, context, answers)


def dataset_kind(spec: str) -> str:
    """stdlib_docstring_qa | squad_json | tfds; a one-line UserError for anything else."""
    if spec == docstring_qa.SPEC:
        return spec
    for kind in ("squad_json", "tfds"):
        if spec.startswith(kind + ":") and len(spec) > len(kind) + 1:
            return kind
    raise UserError(f"config.task.dataset={spec!r}: must be one of {', '.join(QA_SOURCES)}")


def split_names(spec: str, splits: str) -> tuple[str, str]:
    """(train split, eval split) of task.splits 'TRAIN,EVAL' ('' = the spec's usual)."""
    names = tuple(s.strip() for s in splits.split(",")) if splits.strip() else DEFAULT_SPLITS[dataset_kind(spec)]
    if len(names) != 2 or not all(names):
        raise UserError(f"config.task.splits={splits!r}: give two split names, train's then "
                        "eval's, e.g. 'train,validation' (or '' for the dataset's usual)")
    if spec == docstring_qa.SPEC and names != DEFAULT_SPLITS[spec]:
        raise UserError(f"config.task.splits={splits!r}: {spec} has splits 'train,validation' "
                        "(leave task.splits empty)")
    return names


@dataclasses.dataclass
class QAStream:
    """A QA dataset read example by example: iterating yields checked QARows, train's before
    eval's, reading the dataset again each time; `stats` is set when an iteration ends."""
    spec: str
    rows: Callable[[dict], Iterator[QARow]]  # fills its dict with the dataset's own stats
    stats: dict | None = None

    def __iter__(self) -> Iterator[QARow]:
        counts = {"train": 0, "eval": 0}
        answers = {"train": 0, "eval": 0}
        extra: dict = {}
        for row in self.rows(extra):
            split = row[0]
            if split == "eval" and not counts["train"]:
                raise _empty(self.spec, "train")
            check_row(self.spec, row)
            counts[split] += 1
            answers[split] += len(row[4])
            yield row
        for split in ("train", "eval"):
            if not counts[split]:
                raise _empty(self.spec, split)
        self.stats = {**{f"{s}_examples": counts[s] for s in counts},
                      "eval_answers_per_question": round(answers["eval"] / counts["eval"], 3), **extra}


def _empty(spec: str, split: str) -> UserError:
    return UserError(f"{spec}: the {split} split has no examples: check the path or split name "
                     "(task.splits), or use another dataset")


def check_row(spec: str, row: QARow) -> None:
    """One-line UserError for an example without answers, or an answer outside its context or
    whose text is not the context's at its offset."""
    _, example_id, question, context, answers = row
    if not answers:
        raise UserError(f"{spec}: example {example_id!r} has no answer (unanswerable questions, as "
                        "SQuAD 2.0's, are not supported): drop it or give its answer span")
    if not question.strip():
        raise UserError(f"{spec}: example {example_id!r} has an empty question: drop it or fix it")
    for start, text in answers:
        end = start + len(text)
        if not text.strip() or start < 0 or end > len(context):
            raise UserError(f"{spec}: example {example_id!r}: answer {text[:40]!r} at character "
                            f"{start} lies outside its context of {len(context)} characters: fix "
                            "answer_start (characters of the context, from 0) or the text")
        if context[start:end] != text:
            raise UserError(f"{spec}: example {example_id!r}: answer {text[:40]!r} differs from the "
                            f"context at character {start} ({context[start:end][:40]!r}): fix "
                            "answer_start (characters of the context, from 0) or the text")


def open_qa(spec: str, *, splits: str = "", tfds_data_dir: str = "", val_fraction: float = 0.1,
            max_examples: int = 0) -> QAStream:
    """The QA dataset named by spec as a stream (see the module docstring); max_examples caps
    train (0 = all); val_fraction is the embedded task's eval share. Settings are checked here,
    before any example is read."""
    kind = dataset_kind(spec)
    train_split, eval_split = split_names(spec, splits)
    if max_examples < 0:
        raise UserError(f"config.task.max_examples={max_examples}: must be >= 0 (0 = the whole "
                        "train split)")
    if kind == docstring_qa.SPEC:
        return QAStream(spec, lambda extra: docstring_qa.rows(extra, val_fraction=val_fraction,
                                                               max_examples=max_examples))
    if kind == "squad_json":
        return _squad_json_stream(spec, train_split, eval_split, max_examples)
    return _tfds_stream(spec, tfds_data_dir, train_split, eval_split, max_examples)


# ---------------------------------------------------------------- squad_json:


def _squad_json_stream(spec: str, train_split: str, eval_split: str, max_examples: int) -> QAStream:
    pattern = os.path.expanduser(spec[len("squad_json:"):])
    if "{split}" not in pattern:
        raise UserError(f"config.task.dataset={spec!r}: the path must hold {{split}}, filled with "
                        "the names of task.splits (e.g. squad_json:/data/squad/{split}-v1.1.json "
                        "for train-v1.1.json and dev-v1.1.json)")
    paths = {role: pattern.replace("{split}", name)
             for role, name in (("train", train_split), ("eval", eval_split))}
    for role, path in paths.items():
        if not os.path.isfile(path):
            near = sorted(glob.glob(pattern.replace("{split}", "*")))[:4]
            raise UserError(f"config.task.dataset={spec!r}: the {role} file {path} does not exist "
                            f"(files there: {', '.join(near) or 'none'}): check the path and "
                            "task.splits")

    def rows(extra: dict) -> Iterator[QARow]:
        for role in ("train", "eval"):
            for n, row in enumerate(read_squad_json(paths[role]), start=1):
                if role == "train" and max_examples and n > max_examples:
                    break
                yield (role, *row)
        extra["files"] = paths

    return QAStream(spec, rows)


def read_squad_json(path: str) -> Iterator[tuple[str, str, str, Answers]]:
    """(id, question, context, answers) of each question of a SQuAD v1.1-format file, in order;
    a file that is not JSON or lacks a key is a one-line UserError naming it."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise UserError(f"{path}: not a readable SQuAD JSON file ({str(e).splitlines()[0]}): "
                        "give a SQuAD v1.1-format file") from None
    where = "data"
    try:
        for i, article in enumerate(data["data"]):
            for j, paragraph in enumerate(article["paragraphs"]):
                where = f"data[{i}].paragraphs[{j}]"
                context = paragraph["context"]
                for k, qa in enumerate(paragraph["qas"]):
                    where = f"data[{i}].paragraphs[{j}].qas[{k}]"
                    answers = tuple((int(a["answer_start"]), a["text"]) for a in qa["answers"])
                    yield str(qa["id"]), qa["question"], context, answers
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"{path}: {where} is not SQuAD v1.1 ({type(e).__name__}: {e}): each "
                        "question needs id, question and answers [{text, answer_start}] under "
                        "data[].paragraphs[].qas[] beside its context") from None


# ---------------------------------------------------------------- tfds:squad


def _tfds_stream(spec: str, data_dir: str, train_split: str, eval_split: str,
                 max_examples: int) -> QAStream:
    """The builder opened and checked now; both splits read at each iteration."""
    from llmjax.data import sources

    builder = sources.open_prepared(spec[len("tfds:"):], data_dir, f"config.task.dataset={spec!r}")
    sources.check_split(builder, train_split, "config.task.splits (train)")
    sources.check_split(builder, eval_split, "config.task.splits (eval)")
    missing = [k for k in ("id", "question", "context", "answers") if k not in builder.info.features]
    if missing:
        raise UserError(f"config.task.dataset={spec!r}: {sources.dataset_name(builder)} has no "
                        f"feature {', '.join(missing)}: give a SQuAD-format dataset (tfds:squad)")

    def rows(extra: dict) -> Iterator[QARow]:
        for role, split, limit in (("train", train_split, max_examples), ("eval", eval_split, 0)):
            for _, record in sources.read_records(builder, split, limit):
                a = record["answers"]
                answers = tuple((int(s), sources.as_text(t, "feature 'answers/text'"))
                                for s, t in zip(a["answer_start"], a["text"]))
                yield (role, *(sources.as_text(record[k], f"feature {k!r}")
                               for k in ("id", "question", "context")), answers)

    return QAStream(spec, rows)
