"""The run directory: checked before any data or compile work, and held by one process.

All file I/O (token cache, checkpoints, metrics) is local, so a URL is refused rather than
turned into a local directory named `gs:`. The lock is `fcntl.flock` on `<workdir>/.lock`: the
kernel drops it when its process dies, so a kill -9 never leaves a run locked out. A resumed
run must draw the batches its checkpoints were trained on: each checkpoint records what decides
them (DATA_ORDER), checked whether or not config.json is still there.
"""
from __future__ import annotations

import fcntl
import os
import re
import tempfile
import time
from typing import Any, Callable

from llmjax.config import ConfigError

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_SUBDIRS = ("checkpoints", "data", "tokenizer")
CONFIG_JSON = "config.json"  # the run's config as given (resume, forks, warm starts and llmjax.sample read it)
MODEL_JSON = "model.json"  # the finalized model config (rebuilds the model without the data)
CONVERTED_DIR = "pretrained"  # parameters llmjax.convert --from_hf put there: the run's start
# Checkpoint meta key -> the config key it records: together they decide each step's batch.
DATA_ORDER = {"seed": "train.seed", "batch_size": "train.batch_size", "seq_len": "data.seq_len"}


def check_writable(workdir: str) -> str:
    """The absolute local workdir, created and probed; a one-line ConfigError if unusable."""
    if _URL.match(workdir):
        raise ConfigError(f"--workdir={workdir}: remote workdirs are not supported (all file I/O "
                          "is local): pass a local path, and copy the run to the bucket afterwards")
    workdir = os.path.abspath(workdir)
    if os.path.exists(workdir) and not os.path.isdir(workdir):
        raise ConfigError(f"--workdir={workdir} is a file: pass a directory (new or a run's)")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create --workdir={workdir} ({e.strerror}): pass a path "
                          "you can create directories in") from None
    for name in _SUBDIRS:
        path = os.path.join(workdir, name)
        if os.path.exists(path) and not os.path.isdir(path):
            raise ConfigError(f"{path} is a file, but the run keeps a directory there: move it "
                              "away or pass another --workdir")
    try:
        fd, probe = tempfile.mkstemp(dir=workdir, prefix=".probe")
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        raise ConfigError(f"--workdir={workdir} is not writable ({e.strerror}): pass a "
                          "directory you can write") from None
    return workdir


def data_order(cfg: Any) -> dict[str, Any]:
    """DATA_ORDER's values in a run's config, as its checkpoints record them."""
    out = {}
    for key, dotted in DATA_ORDER.items():
        group, leaf = dotted.split(".")
        out[key] = getattr(getattr(cfg, group), leaf)
    return out


def check_data_order(meta: dict, cfg: Any, row_tokens: int, where: str) -> None:
    """A one-line ConfigError naming the first DATA_ORDER key where cfg differs from the
    checkpoint `meta` saved in `where`. Checkpoints from before batch_size and seq_len were
    recorded: the batch is tokens_seen / data_step / row_tokens (the tokens of one row of this
    task) where that divides exactly; what cannot be derived is not checked."""
    saved, how = dict(meta), {}
    steps, tokens = meta.get("data_step"), meta.get("tokens_seen")
    if "batch_size" not in saved and steps and tokens and tokens % (steps * row_tokens) == 0:
        saved["batch_size"] = tokens // (steps * row_tokens)
        how["batch_size"] = f" (tokens_seen / data_step / {row_tokens} tokens a row)"
    now = data_order(cfg)
    for key, dotted in DATA_ORDER.items():
        if key in saved and saved[key] != now[key]:
            raise ConfigError(
                f"config.{dotted}={now[key]!r} but the checkpoints in {where} were trained with "
                f"{saved[key]!r}{how.get(key, '')}: pass --config.{dotted}={saved[key]!r} to "
                "resume them, or a new --workdir to start afresh")


class WorkdirLock:
    """An exclusive lock on a workdir for the life of a run (or until its process dies)."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, ".lock")
        self._fd: int | None = None

    def acquire(self, wait: float = 0.0, log: Callable[[str], None] = print) -> None:
        """Take the lock and record this pid in it, or raise naming the holder's pid. A holder
        may be shutting down (finishing its last checkpoint after SIGTERM, or the child of a
        killed launcher finishing its run), so this waits up to `wait` seconds first."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                if time.monotonic() >= deadline:
                    os.close(fd)
                    raise ConfigError(f"another llmjax process (pid {holder}) is training in "
                                      f"{self.workdir}: wait for it or pass another --workdir") from None
                if wait and deadline - time.monotonic() > wait - 0.5:  # say it once
                    log(f"another llmjax process (pid {holder}) holds {self.workdir}; waiting up "
                        f"to {wait:.0f}s for it to finish")
                time.sleep(0.5)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkdirLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
