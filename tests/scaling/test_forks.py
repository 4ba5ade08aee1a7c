"""Cooldown forks in a sweep: the forks key, the plan (budgets -> fork steps, parents at constant
LR saving at them, one fork run per budget), the commands, and (slow) a micro sweep end to end."""
import os
import pathlib
import shutil

import ml_collections
import numpy as np
import pytest

from llmjax.config import ConfigError, OptimConfig
from llmjax.scaling import forks, results, sweep
from llmjax.training import optim
from tests.helpers import write_corpus

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _sweep(spec, forks_key):
    c = ml_collections.ConfigDict()
    c.name, c.base = "f", str(ROOT / "configs/gpt_small.py")
    c.set = {"model": {"num_layers": 1, "d_model": 32, "num_heads": 4, "mlp_dim": 64},
             "data": {"dataset": spec, "tokenizer": "byte", "seq_len": 32, "val_fraction": 0.25},
             "train": {"batch_size": 8, "eval_every": 1000, "eval_steps": 2, "log_every": 1,
                       "num_samples": 0, "progress": False},
             "optim": {"warmup_steps": 2}}
    c.axes = [{"optim.lr": [0.003]}]
    c.forks = forks_key
    return c


@pytest.mark.parametrize("key, needle", [
    ({"tokens_per_param": [1], "steps": [3]}, "give exactly one of tokens_per_param, tokens, steps"),
    ({"steps": [10], "cooldown_frac": 0.2}, "give exactly one of"),
    ({"steps": []}, "give a non-empty list of positive numbers"),
    ({"steps": [10, -1]}, "give a non-empty list of positive numbers"),
    ({"steps": [10], "cooldown_fraction": 1.0}, "cooldown_fraction=1.0: must be in (0, 1)"),
    ({"steps": [10], "cooldown_shape": "cosine"}, "cooldown_shape='cosine': must be one of linear, 1-sqrt"),
])
def test_bad_forks_keys_are_one_line_errors(key, needle):
    with pytest.raises(ConfigError) as e:
        forks.spec(ml_collections.ConfigDict({"forks": key}))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)


@pytest.mark.parametrize("total, fraction", [(20, 0.25), (37, 0.2), (1000, 0.1), (11, 0.5)])
def test_the_fork_step_is_where_wsd_over_the_total_starts_to_decay(total, fraction):
    cfg = OptimConfig(schedule="wsd", lr=1.0, warmup_steps=2, decay_fraction=fraction)
    step = forks.fork_step(total, fraction)
    lr = np.asarray([optim.schedule(cfg, total)(k) for k in (step - 1, step)])  # updates S, S+1
    np.testing.assert_allclose(lr, [1.0, lr[1]])
    assert lr[1] < 1.0


def test_the_plan_counts_parameters_without_training_and_forks_each_budget(tmp_path):
    spec = write_corpus(tmp_path / "corpus", num_files=4, max_chars=6000)
    out = str(tmp_path / "sweep")
    cfg = _sweep(spec, {"tokens_per_param": [0.5, 1], "cooldown_fraction": 0.25, "cooldown_shape": "1-sqrt"})
    plan = forks.plan(cfg, sweep.expand(cfg), out)
    parent_dir = os.path.join(out, "lr=0.003")
    assert os.path.isdir(os.path.join(parent_dir, "data")) and not os.path.exists(os.path.join(parent_dir, "checkpoints"))
    params, tokens_per_step = forks.count(plan.parents[0][0], out)
    acc = results.accounting(*forks._prepared(plan.parents[0][0], parent_dir))  # what the parent will count
    assert (params, tokens_per_step) == (acc["params"], acc["tokens_per_step"])
    totals = [round(b * params / tokens_per_step) for b in (0.5, 1)]
    steps = tuple(t - round(0.25 * t) for t in totals)
    (parent, fork_steps), = plan.parents
    assert fork_steps == steps and parent.name == "lr=0.003"
    assert parent.overrides["optim.schedule"] == "constant" and parent.overrides["train.num_steps"] == steps[-1]
    assert parent.overrides["checkpoint.keep"] == 2  # every fork step's checkpoint is kept
    assert [f.name for f in plan.forks] == [f"lr=0.003,fork={t}" for t in totals]
    for f, total, step in zip(plan.forks, totals, steps):
        assert (f.fork_of, f.fork_step) == ("lr=0.003", step)
        assert f.overrides["fork_from"] == os.path.join(parent_dir, "checkpoints", str(step))
        assert {k: f.overrides[k] for k in ("train.num_steps", "optim.schedule", "optim.decay_fraction",
                                             "optim.cooldown_shape")} == {
            "train.num_steps": total, "optim.schedule": "wsd", "optim.decay_fraction": 0.25,
            "optim.cooldown_shape": "1-sqrt"}
    pending = results.row(plan.forks[0], out)  # a fork's row says so before it runs
    assert (pending["status"], pending["fork_of"], pending["fork_step"]) == ("pending", "lr=0.003", steps[0])
    lines = forks.commands(plan, out)
    assert [l.count(f"--config.train.num_steps={s}") for l, s in zip(lines, steps)] == [1, 1]  # one leg per step
    assert lines[2].startswith("# the forks below start from their parents' checkpoints")
    assert all("--config.fork_from=" in l for l in lines[3:]) and len(lines) == 5



def test_the_parents_wall_time_adds_up_its_legs_and_a_rerun_of_the_last(tmp_path, monkeypatch):
    """Each leg is its own llmjax.main command; the parent's record counts them all (a fake clock:
    leg i takes 10 * (i + 1) seconds), and a second attempt of the last leg adds to it."""
    parent = sweep.Run(name="p", base="configs/gpt_small.py", overrides={"train.num_steps": 30}, axis_values={})
    clock, calls, out = [0.0], [], str(tmp_path)

    def call(command, **kwargs):  # a leg that runs to its num_steps and saves there
        calls.append(command)
        clock[0] += 10.0 * len(calls)
        step = next(a.split("=")[1] for a in command if a.startswith("--config.train.num_steps="))
        os.makedirs(os.path.join(out, "p", "checkpoints", step, "state"))
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", call)
    monkeypatch.setattr(sweep.time, "time", lambda: clock[0])
    record = forks._run_parent(parent, (10, 20, 30), out)
    assert len(calls) == 3 and record["wall_sec"] == 10 + 20 + 30
    shutil.rmtree(os.path.join(out, "p", "checkpoints", "30"))
    assert forks._run_parent(parent, (10, 20, 30), out)["wall_sec"] == 60 + 40  # the last leg again
    assert len(calls) == 4


@pytest.mark.slow
def test_a_micro_forks_sweep_runs_parents_then_forks_and_marks_their_rows(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", "")  # one CPU device in the runs (conftest asks for eight)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    spec = write_corpus(tmp_path / "corpus", num_files=4, max_chars=6000)
    out = str(tmp_path / "sweep")
    cfg = _sweep(spec, {"steps": [8, 16], "cooldown_fraction": 0.25})
    plan = forks.plan(cfg, sweep.expand(cfg), out)
    assert plan.parents[0][1] == (6, 12)
    logs = []
    records = forks.run_all(plan, out, log=logs.append)
    assert all(r["returncode"] == 0 for r in records.values()), records
    with open(os.path.join(out, "lr=0.003", "run.log")) as f:
        assert "resumed from step 6" in f.read()  # the parent's second leg
    assert sorted(os.listdir(os.path.join(out, "lr=0.003", "checkpoints"))) == ["12", "6"]
    rows = {r["name"]: r for r in results.write(plan.runs, out)}
    parent, short, long = rows["lr=0.003"], rows["lr=0.003,fork=8"], rows["lr=0.003,fork=16"]
    assert parent["step"] == 12 and "fork_of" not in parent and parent["optim.schedule"] == "constant"
    assert (short["fork_of"], short["fork_step"], short["step"]) == ("lr=0.003", 6, 8)
    assert (long["fork_of"], long["fork_step"], long["step"]) == ("lr=0.003", 12, 16)
    assert long["tokens"] == 16 * 8 * 32 and long["tokens_fork"] == 4 * 8 * 32
    assert long["flops_fork"] == pytest.approx(long["flops"] / 4)
    assert all(r["status"] == "done" for r in rows.values())
    logs.clear()
    assert forks.run_all(plan, out, log=logs.append) == {}  # all done: nothing runs again
    assert sorted(logs) == sorted(f"{n}: done, skipped" for n in rows)
