"""config.data.holdout's eval files: exactly the files the embedded tasks evaluate on."""
import pytest

from llmjax import config as C
from llmjax.data import ast_roles, docstring_qa, holdout, labelled, pairs
from llmjax.data.pipeline import source_key


def _files(ids):
    return {i.rsplit(":", 1)[0] for i in ids}


def test_stdlib_packages_eval_files_are_its_eval_examples_files():
    task = labelled.stdlib_packages()
    held = holdout.eval_files(["stdlib_packages"])
    assert held == _files(task.eval_ids) and len(held) > 10
    assert not held & _files(task.train_ids)  # the task splits by file: no train file is held out


def test_stdlib_roles_and_both_together(monkeypatch):
    texts = {p: t for p, t in ast_roles.source_files().items() if p.startswith(("json/", "logging/", "http/"))}
    monkeypatch.setattr(ast_roles, "source_files", lambda stdlib_dir=None: texts)  # 3 packages: fast
    rows = list(ast_roles.rows({}, texts=texts))
    roles = holdout.eval_files(["stdlib_roles"])
    assert roles == _files(r[1] for r in rows if r[0] == "eval") and roles
    assert holdout.eval_files(["stdlib_packages", "stdlib_roles"]) == roles | holdout.eval_files(["stdlib_packages"])


def test_the_docstring_tasks_eval_files_at_their_configs_val_fraction(monkeypatch):
    qa = list(docstring_qa.rows({}))  # val_fraction 0.1, configs/*_qa.py's
    summaries = pairs.docstring_examples(val_fraction=0.1)
    monkeypatch.setattr(docstring_qa, "rows", lambda extra, stdlib_dir=None: iter(qa))  # each stdlib parse once
    monkeypatch.setattr(pairs, "docstring_examples", lambda stdlib_dir=None, val_fraction=0.05: summaries
                        if val_fraction == 0.1 else pytest.fail("not the configs' val_fraction"))
    held = holdout.eval_files(["stdlib_docstring_qa"])
    assert held == _files(r[1] for r in qa if r[0] == "eval") and len(held) > 10
    assert not held & _files(r[1] for r in qa if r[0] == "train")
    held = holdout.eval_files(["stdlib_docstrings"])
    summaries = [ex for ex in summaries if not ex.dropped]
    assert held == {ex.path for ex in summaries if ex.split == "eval"}
    assert not held & {ex.path for ex in summaries if ex.split == "train"}


def test_the_key_is_checked_and_decides_the_corpus():
    assert holdout.parse(" stdlib_roles,stdlib_packages,stdlib_roles ") == ("stdlib_packages", "stdlib_roles")
    with pytest.raises(C.ConfigError, match=r"config.data.holdout='stdlib_qa': holds out the eval files "
                                            r"of stdlib_packages, stdlib_roles, stdlib_docstring_qa, stdlib_docstrings from the stdlib corpus \(not stdlib_qa\)"):
        C.DataConfig(holdout="stdlib_qa").validate()
    with pytest.raises(C.ConfigError, match="use it with data.dataset='stdlib'"):
        C.DataConfig(dataset="text:/none/*.txt", holdout="stdlib_roles").validate()
    plain = source_key(C.DataConfig())
    assert "holdout" not in plain  # caches prepared before the key stay valid
    assert source_key(C.DataConfig(holdout="stdlib_roles,stdlib_packages"))["holdout"] == "stdlib_packages,stdlib_roles"
