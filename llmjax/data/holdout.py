"""Downstream eval files held out of a pretraining corpus (config.data.holdout).

The embedded downstream tasks are cut from the same standard library the models pretrain on,
and their splits are their own (files in order of sha1(path) per package), not the corpus's
hash band: 95% of stdlib_packages' eval chunks come from files in the corpus's train split.
A model pretrained on them has read, without labels, the texts it is later scored on. Naming
a task here takes its eval files out of the corpus's train split (the validation split is
unchanged, so eval losses stay comparable), which makes a pretrained-then-fine-tuned
comparison inductive, as the task's own baselines are.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

HOLDOUTS: dict[str, Callable[[str | None], Iterable[str]]] = {}  # task dataset -> its eval examples' ids ("path:line")


def _stdlib_packages(stdlib_dir: str | None) -> Iterable[str]:
    from llmjax.data.labelled import stdlib_packages
    return stdlib_packages(stdlib_dir).eval_ids


def _stdlib_roles(stdlib_dir: str | None) -> Iterable[str]:
    from llmjax.data.ast_roles import rows
    return (row[1] for row in rows({}, stdlib_dir) if row[0] == "eval")


def _stdlib_docstring_qa(stdlib_dir: str | None) -> Iterable[str]:
    from llmjax.data import docstring_qa
    return (row[1] for row in docstring_qa.rows({}, stdlib_dir) if row[0] == "eval")


def _stdlib_docstrings(stdlib_dir: str | None) -> Iterable[str]:
    """At val_fraction 0.1, the shipped configs' (encdec_small, gpt_small_summarize)."""
    from llmjax.data.pairs import docstring_examples
    return (f"{ex.path}:{ex.line}" for ex in docstring_examples(stdlib_dir, val_fraction=0.1)
            if ex.split == "eval" and not ex.dropped)


HOLDOUTS.update(stdlib_packages=_stdlib_packages, stdlib_roles=_stdlib_roles,
                stdlib_docstring_qa=_stdlib_docstring_qa, stdlib_docstrings=_stdlib_docstrings)


def parse(spec: str) -> tuple[str, ...]:
    """config.data.holdout's comma-separated names, sorted and without repeats."""
    return tuple(sorted({name.strip() for name in spec.split(",") if name.strip()}))


def eval_files(names: Iterable[str], stdlib_dir: str | None = None) -> frozenset[str]:
    """Paths (relative to the stdlib root, as the corpus names its documents) of the named
    tasks' eval examples."""
    return frozenset(example_id.rsplit(":", 1)[0] for name in names
                     for example_id in HOLDOUTS[name](stdlib_dir))
