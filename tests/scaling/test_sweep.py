"""The sweep runner: expansion and names, commands, --list, and one end-to-end micro sweep
(two 6-step runs through llmjax.main, one made to fail, then a second invocation)."""
import csv
import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys

import ml_collections
import pytest

from llmjax.config import ConfigError
from llmjax.scaling import results, sweep
from tests.helpers import one_device_xla_flags, write_corpus

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _sweep(axes, base="configs/gpt_small.py", **set_):
    c = ml_collections.ConfigDict()
    c.name, c.base, c.set, c.axes = "t", base, set_, axes
    return c


def test_axes_expand_to_their_product_with_stable_readable_names():
    runs = sweep.expand(_sweep([[{"model.d_model": 32, "model.mlp_dim": 64}, {"model.d_model": 64, "model.mlp_dim": 128}],
                                {"optim.lr": [1e-3, 0.003]}], train={"num_steps": 5}))
    assert [r.name for r in runs] == ["d_model=32,mlp_dim=64,lr=0.001", "d_model=32,mlp_dim=64,lr=0.003",
                                      "d_model=64,mlp_dim=128,lr=0.001", "d_model=64,mlp_dim=128,lr=0.003"]
    assert runs[1].overrides == {"train.num_steps": 5, "model.d_model": 32, "model.mlp_dim": 64, "optim.lr": 0.003}
    assert runs[1].axis_values == {"model.d_model": 32, "model.mlp_dim": 64, "optim.lr": 0.003}
    assert [r.name for r in sweep.expand(_sweep([{"model.num_layers": [1, 2]}]))] == ["num_layers=1", "num_layers=2"]


def test_a_config_key_swaps_the_base_file():
    runs = sweep.expand(_sweep([[{"config": "configs/gpt_small.py"}, {"config": "configs/lstm_small.py"}],
                                {"train.seed": [0, 1]}]))
    assert [r.name for r in runs] == ["gpt_small,seed=0", "gpt_small,seed=1", "lstm_small,seed=0", "lstm_small,seed=1"]
    assert runs[2].base == "configs/lstm_small.py" and runs[2].overrides == {"train.seed": 0}


@pytest.mark.parametrize("axes, needle", [
    ([{"a.b": [1], "c.d": [2]}], "a dict axis names one key"),
    ([{"a.b": 3}], "give a list of values"),
    ([{"a.b": []}], "'a.b' has no values"),
    ([[]], "non-empty list"),
    ([[{"a.b": 1}, 2]], "non-empty list"),
    ([{"model.d_model": ["a b", "a_b"]}], "both named 'd_model=a_b'"),
])
def test_bad_axes_are_one_line_errors(axes, needle):
    with pytest.raises(ConfigError, match=needle):
        sweep.expand(_sweep(axes))


def test_commands_are_llmjax_main_runs_in_their_own_workdir():
    run = sweep.expand(_sweep([{"optim.lr": [0.001]}], data={"tokenizer": "byte"}))[0]
    cmd = run.command("sw")
    assert cmd[:-1] == ["python", "-m", "llmjax.main", "--config=configs/gpt_small.py",
                        "--workdir=sw/lr=0.001", "--config.data.tokenizer=byte", "--config.optim.lr=0.001"]
    assert cmd[-1].startswith("--config.data.prepared_dir=sw/data/")


def test_runs_of_one_corpus_share_its_preparation():
    """One prepared corpus per (base file, data settings); a sweep that sets its own keeps it;
    a run recorded before sweeps shared one is still found finished."""
    runs = sweep.expand(_sweep([{"optim.lr": [0.001, 0.002]}, {"data.vocab_size": [512, 1024]}]))
    shared = {r.name: r.command("sw")[-1] for r in runs}
    assert len(set(shared.values())) == 2
    assert shared["lr=0.001,vocab_size=512"] == shared["lr=0.002,vocab_size=512"]
    own = sweep.expand(_sweep([{"optim.lr": [0.001]}], data={"prepared_dir": "/corpora/web"}))[0]
    assert [a for a in own.command("sw") if "prepared_dir" in a] == [
        "--config.data.prepared_dir=/corpora/web"]
    old = {"command": runs[0].command("sw")[1:-1]}
    assert sweep.made_by(old, runs[0], "sw") and not sweep.made_by(old, runs[1], "sw")


@pytest.mark.parametrize("family, task, embedding", [
    ("gpt", "lm", 320 * 32 + 32 * 32),  # token table (byte vocabulary padded to 320) and positions
    ("bert", "mlm", 320 * 32 + 512 * 32 + 2 * 32),  # token, position and token-type tables
    ("encdec", "seq2seq", 320 * 32),  # one shared token table, no learned positions
    ("lstm", "lm", 320 * 32),
])
def test_accounting_counts_embeddings_by_family(family, task, embedding):
    from llmjax import experiment
    from llmjax.models import registry
    from tests.helpers import tiny_config

    cfg = tiny_config("stdlib", family, task)
    model = registry.config_to_dict(experiment.resolve(cfg).model.finalize(320, 32, "cpu", "float32"))
    acc = results.accounting(cfg.to_dict(), model)
    assert acc["params"] - acc["params_non_embedding"] == embedding
    assert acc["tokens_per_step"] >= 8 * 32 and acc["flops_per_token"] > 6 * acc["params_non_embedding"] / 2


def _cli(*args):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": one_device_xla_flags(), "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "llmjax.sweep", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_list_and_commands_print_every_run_of_the_tiny_sweep(tmp_path):
    p = _cli("--config=configs/sweeps/tiny.py", f"--sweep_dir={tmp_path}", "--list")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    sizes = ("d_model=32,mlp_dim=128,num_heads=2", "d_model=64,mlp_dim=256,num_heads=2",
             "d_model=128,mlp_dim=512,num_heads=4")
    assert [l.split()[:2] for l in lines] == [[f"{s},budget_flops={c}", "pending"]
                                              for s in sizes for c in ("1e+11", "3e+11", "1e+12")]
    assert "--config.train.budget_flops=300000000000.0" in lines[1] and not os.listdir(tmp_path)
    p = _cli("--config=configs/sweeps/tiny.py", f"--sweep_dir={tmp_path}", "--commands",
             "--only=d_model=64,mlp_dim=256,num_heads=2,budget_flops=1e+11")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("python -m llmjax.main --config=configs/gpt_small.py --workdir=")
    assert len(p.stdout.splitlines()) == 1 and "--config.model.d_model=64" in p.stdout


def test_a_broken_sweep_file_is_not_blamed_on_an_override(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import ml_collections\n\ndef get_config():\n    return ml_collections.ConfigDict().nope\n")
    p = _cli(f"--config={broken}", "--list")
    assert p.returncode == 2 and "the sweep config file failed to load (AttributeError" in p.stderr, p.stderr


@pytest.mark.parametrize("args, needle", [
    (["--config=configs/sweeps/tiny.py", "--only=nope"], "--only: no run named 'nope'"),
    (["--config=configs/sweeps/tiny.py", "--parallel=0"], "--parallel=0"),
    (["--config=configs/sweeps/tiny.py", "--config.analysis.nope=1"], "names a key the sweep config lacks ("),
    (["--config=configs/sweeps/none.py"], "does not exist"),
    ([], "no sweep config given"),
])
def test_bad_command_lines_are_one_line_errors(args, needle):
    p = _cli(*args)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, p.stderr


def test_micro_sweep_runs_skips_and_survives_a_failed_run(tmp_path, monkeypatch):
    monkeypatch.setenv("XLA_FLAGS", one_device_xla_flags())  # one CPU device in the runs (conftest asks for eight)
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    spec = write_corpus(tmp_path / "corpus", num_files=4, max_chars=6000)
    tiny = {"model": {"num_layers": 2, "d_model": 32, "num_heads": 4, "mlp_dim": 64},
            "data": {"dataset": spec, "tokenizer": "byte", "seq_len": 32, "val_fraction": 0.25},
            "train": {"num_steps": 6, "batch_size": 8, "eval_every": 3, "eval_steps": 2, "log_every": 1,
                      "num_samples": 0, "progress": False},
            "optim": {"warmup_steps": 2}, "checkpoint": {"every_steps": 6}}
    cfg = _sweep([{"optim.lr": [0.003, -1.0]}], base=str(ROOT / "configs/gpt_small.py"), **tiny)
    runs, out = sweep.expand(cfg), str(tmp_path / "sweep")
    assert [r.name for r in runs] == ["lr=0.003", "lr=-1.0"]
    logs = []
    records = sweep.run_all(runs, out, parallel=1, log=logs.append)
    assert records["lr=0.003"]["returncode"] == 0
    assert records["lr=-1.0"]["returncode"] == 2 and "config.optim.lr=-1.0" in records["lr=-1.0"]["error"]
    assert any(l.startswith("lr=-1.0: FAILED (exit code 2)") for l in logs), logs
    rows = results.write(runs, out)
    with open(os.path.join(out, "results.jsonl")) as f:
        assert [json.loads(l) for l in f] == rows
    with open(os.path.join(out, "results.csv")) as f:
        table = list(csv.DictReader(f))
    assert [r["name"] for r in table] == ["lr=0.003", "lr=-1.0"]
    assert [r["status"] for r in table] == ["done", "failed"]
    done = rows[0]
    # 2 layers of (4 d^2 attention + 2 d*mlp ffn + biases + 2 norms) + final norm; embeddings:
    # byte vocabulary (padded to vocab_multiple) x 32 and the learned positions (seq_len x 32).
    embedding = done["model.vocab_multiple"] * -(-259 // done["model.vocab_multiple"]) * 32 + 32 * 32
    assert done["params"] - done["params_non_embedding"] == embedding
    assert done["params_non_embedding"] == 2 * (4 * 32 * 32 + 4 * 32 + 2 * 32 * 64 + 64 + 32 + 4 * 32) + 2 * 32
    assert done["step"] == 6 and done["tokens"] == 6 * 8 * 32
    assert done["flops"] == pytest.approx(done["tokens"] * done["flops_per_token"])
    assert done["best_eval_loss"] <= done["final_eval_loss"] < 6
    assert done["tokens_per_sec"] > 0 and done["train_sec"] > 0 and done["wall_sec"] > done["train_sec"]
    assert done["optim.lr"] == 0.003 and done["model.d_model"] == 32  # axis and config values
    for column in ("params", "params_non_embedding", "tokens", "flops", "final_eval_loss",
                   "best_eval_loss", "wall_sec", "tokens_per_sec", "optim.lr"):
        assert table[0][column] != "", column
    mtime = os.path.getmtime(os.path.join(out, "lr=0.003", "results.json"))
    logs.clear()
    fixed = cfg.copy_and_resolve_references()
    fixed.axes = [{"optim.lr": [0.003]}]
    assert sweep.run_all(sweep.expand(fixed), out, log=logs.append) == {}  # finished: skipped
    assert logs == ["lr=0.003: done, skipped"]
    assert os.path.getmtime(os.path.join(out, "lr=0.003", "results.json")) == mtime
    # An interrupted run (no results.json) runs again and llmjax.main resumes it from its checkpoint.
    wall = done["wall_sec"]
    os.remove(os.path.join(out, "lr=0.003", "results.json"))
    assert sweep.status(sweep.expand(fixed)[0], out) == "unfinished"
    assert sweep.run_all(sweep.expand(fixed), out, log=logs.append)["lr=0.003"]["returncode"] == 0
    with open(os.path.join(out, "lr=0.003", "run.log")) as f:
        assert "resumed from step 6" in f.read()
    again = results.write(sweep.expand(fixed), out)[0]
    assert again["status"] == "done" and again["wall_sec"] > wall  # both attempts counted


def test_analyze_rewrites_table_fits_and_plots_without_running(tmp_path):
    p = _cli("--config=configs/sweeps/tiny.py", f"--sweep_dir={tmp_path}", "--analyze")
    assert p.returncode == 0, p.stderr
    assert "results: " in p.stdout and "(0 of 9 done)" in p.stdout and f"fits: {tmp_path}/fits.json" in p.stdout
    assert sorted(os.listdir(tmp_path)) == ["fits.json", "plots", "results.csv", "results.jsonl"]
    with open(tmp_path / "fits.json") as f:
        assert json.load(f)["families"] == {}  # nothing finished, nothing fitted, nothing run


def test_a_bad_analysis_key_is_refused_before_any_run(tmp_path):
    p = _cli("--config=configs/sweeps/tiny.py", f"--sweep_dir={tmp_path}", "--config.analysis.compute=6N")
    assert p.returncode == 2 and "analysis.compute='6N'" in p.stderr and not os.listdir(tmp_path), p.stderr


def test_an_unknown_sweep_key_is_refused_naming_the_nearest_known_one():
    c = _sweep([{"optim.lr": [0.001]}])
    c.sett = c.set
    with pytest.raises(ConfigError, match=r"'sett' is not a key.*did you mean 'set'\?.*analysis, axes, base, forks, name, set"):
        sweep.expand(c)


def _sweep_file(tmp_path, body):
    path = tmp_path / "sweep_cfg.py"
    path.write_text("import ml_collections\n\n\ndef get_config():\n    c = ml_collections.ConfigDict()\n"
                    "    c.name, c.base, c.set = 't', 'configs/gpt_small.py', {}\n"
                    f"    c.axes = [{{'optim.lr': [0.001]}}]\n{body}    return c\n")
    return path


@pytest.mark.parametrize("body, needle", [
    ("    c.sett = c.set\n", "'sett' is not a key of a sweep config (did you mean 'set'?)"),
    ("    c.axes = [{'model.num_layers': []}]\n", "sweep axes[0] 'model.num_layers' has no values"),
])
def test_a_typo_or_an_empty_axis_in_a_sweep_file_is_one_line_not_the_default_runs(tmp_path, body, needle):
    p = _cli(f"--config={_sweep_file(tmp_path, body)}", f"--sweep_dir={tmp_path / 'sw'}", "--commands")
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and needle in p.stderr, p.stderr
    assert "Traceback" not in p.stderr and not p.stdout


def test_help_exits_0():
    p = _cli("--help")
    assert p.returncode == 0 and "--sweep_dir" in p.stdout, p.stderr


def _fake_finished(runs, sweep_dir, monkeypatch):
    """Each run through run_one with llmjax.main faked: it writes results.json in the workdir."""
    def call(command, **kwargs):
        workdir = next(a.split("=", 1)[1] for a in command if a.startswith("--workdir="))
        with open(os.path.join(workdir, "results.json"), "w") as f:
            json.dump({"step": 6, "loss": 2.5}, f)
        return 0

    monkeypatch.setattr(sweep.subprocess, "call", call)
    for run in runs:
        sweep.run_one(run, sweep_dir)


def _csv(sweep_dir):
    with open(os.path.join(sweep_dir, "results.csv")) as f:
        return f.read()


def test_a_moved_or_copied_sweep_dir_finds_its_finished_runs_by_their_config(tmp_path, monkeypatch):
    old, new = str(tmp_path / "a"), str(tmp_path / "b")
    runs = sweep.expand(_sweep([{"optim.lr": [0.001, 0.003]}], train={"num_steps": 6}))
    fork = dataclasses.replace(runs[0], name=f"{runs[0].name},fork=8", fork_of=runs[0].name, fork_step=6,
                               overrides={**runs[0].overrides, "fork_from": os.path.join(old, runs[0].name,
                                                                                         "checkpoints", "6")})
    _fake_finished([*runs, fork], old, monkeypatch)
    results.write([*runs, fork], old)
    shutil.copytree(old, new)
    moved_fork = dataclasses.replace(fork, overrides={**fork.overrides, "fork_from": os.path.join(
        new, runs[0].name, "checkpoints", "6")})  # as forks.plan builds it for the new directory
    assert [sweep.status(r, new) for r in [*runs, moved_fork]] == ["done"] * 3
    results.write([*runs, moved_fork], new)
    assert _csv(new) == _csv(old) and _csv(new).count(",done,") == 3
    other = sweep.expand(_sweep([{"optim.lr": [0.001]}], train={"num_steps": 7}))[0]  # another config
    assert sweep.status(other, new) == "unfinished"
    sweep.check_analyzable([*runs, moved_fork], new)  # finished runs found: nothing to refuse


def test_analyze_refuses_a_table_of_no_finished_runs_when_finished_runs_are_on_disk(tmp_path, monkeypatch):
    out = str(tmp_path / "sw")
    sweep.check_analyzable(sweep.expand(_sweep([{"optim.lr": [0.001]}])), out)  # nothing ran: an empty table is right
    ran = sweep.expand(_sweep([{"optim.lr": [0.001, 0.003]}], train={"num_steps": 6}))
    _fake_finished(ran, out, monkeypatch)
    edited = sweep.expand(_sweep([{"optim.lr": [0.001, 0.003]}], train={"num_steps": 7}))
    with pytest.raises(ConfigError, match=r"none of the 2 runs .* is done .* 2 finished run directories \(lr=0.001"):
        sweep.check_analyzable(edited, out)
