"""The command line, end to end: a tiny run through `python -m llmjax.main`, and bad input."""
import json
import math
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import one_device_xla_flags, write_corpus

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--config.model.num_layers=2", "--config.model.d_model=32", "--config.model.num_heads=4",
        "--config.model.mlp_dim=64", "--config.data.tokenizer=byte", "--config.data.seq_len=32",
        "--config.data.val_fraction=0.2", "--config.train.batch_size=8", "--config.train.num_steps=30",
        "--config.train.eval_every=15", "--config.train.eval_steps=2", "--config.train.log_every=5",
        "--config.optim.warmup_steps=5", "--config.optim.lr=3e-3", "--config.checkpoint.every_steps=15",
        "--config.train.num_samples=1", "--config.train.sample_tokens=16"]


def _cli(args, timeout=300, **env_vars):
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": one_device_xla_flags(), **env_vars}
    return subprocess.run([sys.executable, "-m", "llmjax.main", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def _run(args, timeout=300, **env_vars):
    return _cli(["--config=configs/gpt_small.py", *args], timeout=timeout, **env_vars)


def _one_line_error(p, needle):
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and lines[0].startswith("llmjax: error: "), p.stderr
    assert needle in lines[0], lines[0]


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    """One tiny 30-step run, then the same command resumed to 45 steps with a new grad_clip
    (the refusal tests below run against its workdir: a refused command must change nothing)."""
    tmp = tmp_path_factory.mktemp("contract")
    spec = write_corpus(tmp / "corpus")
    work = tmp / "run"
    base = [*TINY, f"--config.data.dataset={spec}", f"--workdir={work}"]
    first = _run(base)
    assert first.returncode == 0, first.stderr[-2000:]
    rows = [json.loads(l) for l in (work / "metrics.jsonl").read_text().splitlines()]
    checkpoints = sorted(os.listdir(work / "checkpoints"))
    config = json.loads((work / "config.json").read_text())
    resumed = _run([*base, "--config.train.num_steps=45", "--config.train.num_samples=0",
                    "--config.optim.grad_clip=0"])
    return dict(spec=spec, work=work, base=base, first=first, rows=rows, checkpoints=checkpoints,
                config=config, resumed=resumed)


def test_tiny_run_writes_the_workdir_contract(contract):
    p, work, rows = contract["first"], contract["work"], contract["rows"]
    train = [r for r in rows if r["split"] == "train"]
    evals = [r for r in rows if r["split"] == "eval"]
    assert [r["step"] for r in evals] == [15, 30]
    assert train[-1]["loss"] < train[0]["loss"] - 0.5
    assert train[0]["startup_sec"] > 0 and "tokens_per_sec" not in train[0]  # compile: no rate
    for r in train[1:]:
        assert {"step", "loss", "lr", "grad_norm", "tokens_per_sec"} <= set(r)
    for r in evals:
        assert math.isclose(r["perplexity"], math.exp(r["loss"]), rel_tol=1e-6)
        # byte tokenizer: one byte per token, so bits/byte is loss / ln 2
        assert math.isclose(r["bits_per_byte"], r["loss"] / math.log(2), rel_tol=1e-4)
    cfg = contract["config"]
    assert cfg["train"]["num_steps"] == 30 and cfg["data"]["dataset"] == contract["spec"]
    assert contract["checkpoints"][:2] == ["15", "30"]
    assert (work / "tokenizer").is_dir()
    assert "unigram baseline" in p.stdout and "samples" in p.stdout


def test_more_steps_and_a_new_grad_clip_resume_and_append_only_newer_rows(contract):
    """A new grad_clip resumes cleanly (the optimizer state keeps its tree). Before: the
    checkpoints moved to checkpoints_corrupt/, a restart from step 0, the metrics rows discarded."""
    p, work = contract["resumed"], contract["work"]
    assert p.returncode == 0 and "resumed from step 30" in p.stdout, p.stderr[-2000:]
    steps = [json.loads(l)["step"] for l in (work / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 45
    assert json.loads((work / "config.json").read_text())["optim"]["grad_clip"] == 0
    assert not (work / "checkpoints_corrupt").exists() and not (work / "metrics.discarded.jsonl").exists()


def test_resume_with_a_different_model_is_refused(contract):
    work = contract["work"]
    p = _run([*contract["base"], "--config.model.d_model=64"])
    assert p.returncode == 2 and "config.model.d_model=64 but the run in" in p.stderr
    assert {"30", "45"} <= set(os.listdir(work / "checkpoints"))  # nothing lost


def test_a_new_optimizer_on_resume_is_refused(contract):
    """A new optimizer is refused in one line naming the key (its saved state does not fit);
    nothing is moved or discarded."""
    work = contract["work"]
    p = _run([*contract["base"], "--config.train.num_steps=60", "--config.optim.name=lion"])
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "config.optim.name='lion'" in lines[0], p.stderr
    assert not (work / "checkpoints_corrupt").exists() and not (work / "metrics.discarded.jsonl").exists()
    assert {"30", "45"} <= set(os.listdir(work / "checkpoints"))


@pytest.mark.parametrize("args, needle", [
    (["--config.model.num_layerz=3"], "unknown config key config.model.num_layerz"),
    (["--config.model.num_layers=abc"], "config.model.num_layers"),
    (["--config.model.d_model=100", "--config.model.num_heads=3"], "config.model.d_model=100"),
    (["--config.data.seq_len=512", "--config.model.max_len=256"], "config.data.seq_len=512"),
    (["--config.data.dataset=text:/no/such/*.txt"], "matches no files"),
])
def test_bad_flags_fail_fast_with_one_line(tmp_path, args, needle):
    start = time.time()
    p = _run([*args, f"--workdir={tmp_path / 'w'}"], timeout=120)
    assert p.returncode == 2
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and needle in lines[0], p.stderr
    assert not (tmp_path / "w").exists()  # nothing prepared, nothing written
    assert time.time() - start < 60


def test_space_separated_config_is_parsed(tmp_path):
    # absl accepts `--config PATH`; the run reaches the config checks (so the file was read).
    p = _cli(["--config", "configs/gpt_small.py", "--config.data.seq_len", "512",
              "--config.model.max_len=256", f"--workdir={tmp_path / 'w'}"], timeout=120)
    _one_line_error(p, "config.data.seq_len=512")


@pytest.mark.parametrize("args, needle", [
    ([], "no config given: pass --config=configs/gpt_small.py"),
    (["--config=configs/no_such.py"], "config file 'configs/no_such.py' does not exist"),
    (["--config=configs/no_such.py", "--config.model.num_layers=3"],
     "No such file or directory: 'configs/no_such.py'"),
    (["--config=configs/gpt_small.py", "--config.modl.x=1"], "unknown config key config.modl.x: known"),
    (["--config=configs/lstm_small.py", "--config.model.num_heads=4"], "unknown config key "
     "config.model.num_heads for model family 'lstm': known keys here: d_model, dropout, embed_init, forget_bias, hidden, init_std,"),
    (["--config=configs/gpt_small.py", "--config.model.name=lstm", "--config.model.bogus=1"],
     "config.model.bogus for model family 'lstm': known keys here: d_model, dropout, embed_init, forget_bias, hidden, init_std,"),
    (["--config=configs/gpt_small.py", "--config.model.num_layers.x=1"], "config.model.num_layers.x"),
    (["--config.model.num_layers=3", "--config=configs/gpt_small.py"], "before a value for --config"),
    (["--config=configs/gpt_small.py", "--config.model=3"], "--config.model=3: Failed to parse '3'"),
    (["--config=configs/gpt_small.py", "--config.model.num_layers"], "--config.model.num_layers"),
    (["--config=configs/gpt_small.py:extra"], "get_config()"),
    (["--config=configs/gpt_small.py", "--workdirr=x"], "unknown flag --workdirr"),
    (["--config=configs/gpt_small.py", "stray"], "unexpected arguments ['stray']"),
])
def test_bad_command_lines_are_one_line_errors(args, needle):
    _one_line_error(_cli(args, timeout=120), needle)


@pytest.mark.parametrize("flag", ["--help", "--helpfull"])
def test_help_without_a_config_prints_help(flag):
    p = _cli([flag], timeout=120)
    assert p.returncode == 0, p.stderr
    assert "--config" in p.stdout and "--workdir" in p.stdout and "error" not in p.stderr


def test_garbage_config_json_is_a_one_line_error(tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    (work / "config.json").write_text("{not json")
    p = _run([f"--workdir={work}"], timeout=120)
    _one_line_error(p, "config.json is not valid JSON")
    # Deleting it would switch the resume checks off: restore it, or start a new workdir.
    assert "delete" not in p.stderr and "restore it from a backup" in p.stderr
    assert (work / "config.json").read_text() == "{not json"  # left as it was


SLURM_OUTSIDE_SRUN = dict(SLURM_NTASKS="2", SLURM_JOB_ID="4242", SLURM_STEP_NODELIST="localhost",
                          SLURM_PROCID="0", SLURM_LOCALID="0")


@pytest.mark.parametrize("env, needle", [
    (dict(SLURM_NTASKS="2"), "SLURM_NTASKS=2 is set but"),  # a plain shell: jax cannot even start
    (SLURM_OUTSIDE_SRUN, "no other process joined within 3 s"),  # jax would wait for process 1
])
def test_slurm_variables_without_srun_are_one_line_errors(tmp_path, env, needle):
    start = time.time()
    p = _run([f"--workdir={tmp_path / 'w'}"], timeout=120, LLMJAX_DISTRIBUTED_TIMEOUT="3", **env)
    _one_line_error(p, needle)
    assert "srun" in p.stderr and "unset SLURM_NTASKS" in p.stderr
    assert time.time() - start < 60


def test_too_little_data_leaves_no_record_and_the_fix_runs(tmp_path):
    """A text shorter than one row fails with one line before training; config.json is not
    written, so the corrected command is not refused as a changed config."""
    (tmp_path / "tiny.txt").write_text("print('hello')\n" * 3)
    work = tmp_path / "run"
    base = [*TINY, f"--config.data.dataset=text:{tmp_path}/tiny.txt", f"--workdir={work}",
            "--config.train.num_steps=2", "--config.train.num_samples=0", "--config.data.val_fraction=0.5"]
    p = _run([*base, "--config.data.seq_len=64"])
    assert p.returncode == 2 and "Traceback" not in p.stderr, p.stderr[-2000:]
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "seq_len" in lines[0], p.stderr
    assert not (work / "config.json").exists()
    p2 = _run([*base, "--config.data.seq_len=8", "--config.train.eval_every=2"])
    assert p2.returncode == 0, p2.stderr[-2000:]
    assert (work / "config.json").exists()


def test_ctrl_c_saves_and_stops_then_resumes(tmp_path):
    """A first Ctrl-C (SIGINT) saves a checkpoint at the current step and exits cleanly; the same
    command resumes from it. Before: KeyboardInterrupt, a traceback and no save."""
    import signal

    spec = write_corpus(tmp_path / "corpus")
    work = tmp_path / "run"
    args = [*TINY, f"--config.data.dataset={spec}", f"--workdir={work}", "--config.train.num_steps=100000",
            "--config.checkpoint.every_steps=100000", "--config.train.eval_every=100000",
            "--config.train.num_samples=0", "--config.train.progress=False", "--config.train.log_every=1"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": one_device_xla_flags(), "PYTHONUNBUFFERED": "1"}
    p = subprocess.Popen([sys.executable, "-m", "llmjax.main", "--config=configs/gpt_small.py", *args],
                         cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while time.time() < deadline and not (work / "metrics.jsonl").exists():
        time.sleep(0.2)
    time.sleep(1.0)  # a few steps in
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=240)
    assert p.returncode == 0, err[-2000:]
    assert "Traceback" not in err and "stop requested: saved step" in out, out[-2000:]
    saved = int(out.split("stop requested: saved step ")[1].split(";")[0])
    assert (work / "checkpoints" / str(saved)).is_dir()
    p2 = _run([*args[:-6], "--config.train.num_steps", str(saved + 2), "--config.train.num_samples=0"])
    assert p2.returncode == 0 and f"resumed from step {saved}" in p2.stdout, p2.stderr[-2000:]


def test_second_process_and_remote_workdir_are_refused(tmp_path):
    """One run per workdir (the second is refused in one line while the first holds the lock);
    a gs:// workdir is refused instead of becoming a local directory named gs:."""
    from llmjax.training.workdir import WorkdirLock

    spec = write_corpus(tmp_path / "corpus")
    work = tmp_path / "run"
    with WorkdirLock(str(work.mkdir() or work)):
        start = time.time()
        p = _run([*TINY, f"--config.data.dataset={spec}", f"--workdir={work}"], LLMJAX_LOCK_WAIT="2")
    lines = [l for l in p.stderr.splitlines() if l.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "another llmjax process" in lines[0], p.stderr
    assert "waiting up to 2s" in p.stdout and time.time() - start < 60
    p = _run([*TINY, f"--config.data.dataset={spec}", "--workdir=gs://bucket/run"])
    assert p.returncode == 2 and "remote workdirs are not supported" in p.stderr
    assert not os.path.exists(os.path.join(ROOT, "gs:"))
