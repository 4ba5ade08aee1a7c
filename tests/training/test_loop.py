"""The training loop in-process: a resumed run reproduces an uninterrupted one exactly."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

from llmjax.config import ConfigError
from llmjax.experiment import resolve
from llmjax.experiment import train_and_evaluate
from llmjax.models.registry import config_from_dict
from tests.helpers import tiny_config, write_corpus


def _rows(workdir):
    return [json.loads(l) for l in (workdir / "metrics.jsonl").read_text().splitlines()]


def test_resume_reproduces_the_uninterrupted_run(tmp_path):
    spec = write_corpus(tmp_path / "corpus")
    cfg = resolve(tiny_config(spec, model__dropout=0.1), num_devices=8)  # dropout: RNG must resume too
    a, b = tmp_path / "a", tmp_path / "b"
    out_a = train_and_evaluate(cfg, str(a), log=lambda _: None)

    # b: the state of a as it was when step 6 was saved (tokenizer, token cache, checkpoint 6).
    b.mkdir()
    for name in ("tokenizer", "data"):
        shutil.copytree(a / name, b / name)
    shutil.copytree(a / "checkpoints" / "6", b / "checkpoints" / "6")
    (b / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _rows(a)) + '{"step": 9, "spl')
    msgs = []
    out_b = train_and_evaluate(cfg, str(b), log=msgs.append)
    assert any("resumed from step 6" in m for m in msgs)

    ra, rb = _rows(a), _rows(b)
    key = lambda r: (r["step"], r["split"])  # noqa: E731
    la = {key(r): r["loss"] for r in ra}
    lb = {key(r): r["loss"] for r in rb}
    assert set(la) == set(lb)  # rows after step 6 were rewound, not duplicated
    for k in la:
        assert la[k] == lb[k], (k, la[k], lb[k])  # bit-identical on CPU
    assert out_a["loss"] == out_b["loss"] and out_a["step"] == out_b["step"] == 12
    assert (b / "metrics.discarded.jsonl").exists()  # the killed run's rows are kept aside
    assert np.isfinite(out_a["unigram_loss"]) and out_a["loss"] < rows_first_loss(ra)
    # model.json rebuilds the run's exact model (padded vocabulary, lengths) without the data.
    model_cfg = config_from_dict(json.loads((a / "model.json").read_text()))
    assert model_cfg.vocab_size % 64 == 0 and model_cfg.vocab_size >= model_cfg.real_vocab_size == 262
    assert model_cfg == dataclasses.replace(cfg.model, vocab_size=model_cfg.vocab_size, real_vocab_size=262,
                                            max_len=cfg.data.seq_len,
                                            num_kv_heads=cfg.model.kv_heads, attention_backend="xla")


def rows_first_loss(rows):
    return [r["loss"] for r in rows if r["split"] == "train"][0]


def test_a_resume_with_another_seed_and_batch_is_refused_from_the_checkpoint(tmp_path):
    """No config.json (in-process runs write none, as after `rm workdir/config.json`): the
    checkpoint's meta still refuses seed 7 / batch 16 before any data or compile work."""
    spec = write_corpus(tmp_path / "corpus")
    work = str(tmp_path / "run")
    train_and_evaluate(resolve(tiny_config(spec, train__num_steps=2), num_devices=8), work,
                       log=lambda _: None)
    other = resolve(tiny_config(spec, train__num_steps=12, train__seed=7, train__batch_size=16),
                    num_devices=8)
    msgs = []
    with pytest.raises(ConfigError) as e:
        train_and_evaluate(other, work, log=msgs.append)
    assert "\n" not in str(e.value)
    assert str(e.value).startswith("config.train.seed=7 but the checkpoints in ")
    assert not any("data" in m for m in msgs)  # refused before the data was prepared


def test_a_run_that_fails_at_start_leaves_no_empty_checkpoints_dir(tmp_path):
    """A UserError after the checkpoint manager made checkpoints/ (here the budget buys no step):
    an empty checkpoints/ would read as a run to convert (and to a person), so it goes."""
    spec = write_corpus(tmp_path / "corpus")
    cfg = resolve(tiny_config(spec, train__budget_flops=1.0), num_devices=8)
    with pytest.raises(ConfigError, match="budget_flops"):
        train_and_evaluate(cfg, str(tmp_path / "w"), log=lambda _: None)
    assert not (tmp_path / "w" / "checkpoints").exists()
