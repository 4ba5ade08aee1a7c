"""The workdir is checked before any data or compile work, and only one process trains in it."""
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from llmjax.config import ConfigError
from llmjax.training.workdir import WorkdirLock, check_writable

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
