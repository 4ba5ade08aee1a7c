"""The workdir is checked before any data or compile work, and only one process trains in it."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from llmjax.config import ConfigError
from llmjax.training.workdir import WorkdirLock, check_data_order, check_writable, data_order

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_a_fresh_workdir_is_created_and_left_clean(tmp_path):
    wd = check_writable(str(tmp_path / "run" / "a"))
    assert wd == str(tmp_path / "run" / "a") and os.listdir(wd) == []  # the probe file is gone


@pytest.mark.parametrize("make, match", [
    (lambda p: p.write_text("x"), "is a file"),
    (lambda p: None, "cannot create"),  # under a file: not even root can mkdir there
    (lambda p: (p.mkdir(), (p / "checkpoints").write_text("x")), "checkpoints.*is a file"),
])
def test_bad_workdirs_are_one_line_errors(tmp_path, make, match):
    wd = tmp_path / "run"
    if match == "cannot create":
        (tmp_path / "afile").write_text("x")
        wd = tmp_path / "afile" / "run"
    make(wd)
    with pytest.raises(ConfigError, match=match) as e:
        check_writable(str(wd))
    assert "\n" not in str(e.value) and "--workdir" in str(e.value)


def test_a_directory_root_cannot_write_is_refused():
    with pytest.raises(ConfigError, match="not writable"):
        check_writable("/proc")  # exists, but no file can be created in it, even by root


@pytest.mark.parametrize("url", ["gs://bucket/run", "s3://b/run", "file:///tmp/run"])
def test_remote_workdirs_are_refused(url):
    with pytest.raises(ConfigError, match="remote workdirs are not supported.*local"):
        check_writable(url)


def _holder(workdir):
    """A second process that takes the lock and then sleeps."""
    code = textwrap.dedent(f"""
        import time
        from llmjax.training.workdir import WorkdirLock
        WorkdirLock({workdir!r}).acquire()
        print("locked", flush=True)
        time.sleep(600)
    """)
    p = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE, text=True,
                         env=dict(os.environ, PYTHONPATH=REPO))
    assert p.stdout.readline().strip() == "locked"
    return p


def test_a_second_process_is_refused_and_a_killed_one_frees_the_lock(tmp_path):
    wd = str(tmp_path)
    holder = _holder(wd)
    try:
        with pytest.raises(ConfigError) as e:
            WorkdirLock(wd).acquire()
        assert str(e.value) == (f"another llmjax process (pid {holder.pid}) is training in {wd}: "
                                "wait for it or pass another --workdir")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with WorkdirLock(wd):  # the kernel released it with the killed process
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            WorkdirLock(wd).acquire()  # held by this process now, through another descriptor
    with WorkdirLock(wd):  # released on exit
        pass


def test_a_lock_released_while_waiting_is_taken(tmp_path):
    """A holder that finishes within the wait (a run shutting down) hands the workdir over."""
    import subprocess
    import sys
    import time

    from llmjax.training.workdir import WorkdirLock

    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from llmjax.training.workdir import WorkdirLock; "
        f"l = WorkdirLock({str(tmp_path)!r}); l.acquire(); print('held', flush=True); time.sleep(2)")],
        stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    msgs = []
    start = time.monotonic()
    lock = WorkdirLock(str(tmp_path))
    lock.acquire(wait=30, log=msgs.append)
    assert time.monotonic() - start < 20 and len(msgs) == 1 and "waiting up to 30s" in msgs[0]
    lock.release()
    holder.wait()


# ---------------------------------------------------------------- the data order of a resume


def _run(tmp_path, **overrides):
    from llmjax.experiment import resolve
    from tests.helpers import tiny_config, write_corpus

    spec = write_corpus(tmp_path / "corpus")
    return resolve(tiny_config(spec, **overrides), num_devices=1)  # seed 0, batch 8, seq_len 32


def test_a_resume_with_another_seed_or_batch_is_refused_without_config_json(tmp_path):
    """config.json deleted: the checkpoint's own meta still refuses another seed or batch,
    which would train on other batches and record a config that never trained it."""
    meta = {"data_step": 10, "seed": 0, "batch_size": 8, "seq_len": 32, "schedule_steps": 10,
            "tokens_seen": 10 * 8 * 32}
    with pytest.raises(ConfigError) as e:
        check_data_order(meta, _run(tmp_path, train__seed=7, train__batch_size=16), 32, "w/ck")
    assert str(e.value) == ("config.train.seed=7 but the checkpoints in w/ck were trained with 0: "
                            "pass --config.train.seed=0 to resume them, or a new --workdir to "
                            "start afresh")
    with pytest.raises(ConfigError, match=r"^config.train.batch_size=16 but .* trained with 8: "
                                          r"pass --config.train.batch_size=8 to resume"):
        check_data_order(meta, _run(tmp_path, train__batch_size=16), 32, "w/ck")
    with pytest.raises(ConfigError, match=r"^config.data.seq_len=64 .* trained with 32"):
        check_data_order(meta, _run(tmp_path, data__seq_len=64), 64, "w/ck")
    check_data_order(meta, _run(tmp_path, train__num_steps=20), 32, "w/ck")  # more steps: fine


def test_a_checkpoint_from_before_the_batch_was_recorded_has_it_derived(tmp_path):
    old = {"data_step": 10, "seed": 0, "schedule_steps": 10, "tokens_seen": 10 * 8 * 32}
    with pytest.raises(ConfigError, match=r"batch_size=16 .* trained with 8 \(tokens_seen / "
                                          r"data_step / 32 tokens a row\)"):
        check_data_order(old, _run(tmp_path, train__batch_size=16), 32, "w/ck")
    check_data_order(old, _run(tmp_path), 32, "w/ck")
    check_data_order({"data_step": 10, "seed": 0}, _run(tmp_path, train__batch_size=16), 32, "w")


def test_data_order_is_what_a_checkpoint_records(tmp_path):
    assert data_order(_run(tmp_path, train__seed=3)) == {"seed": 3, "batch_size": 8, "seq_len": 32}
