"""Atomic file writes: a crash leaves the old file or the new one, never half of one, and a write
that fails (a full disk, no permission) leaves no temporary file and is one line naming the file
and the fix. And a directory lock, for derived data that several runs may build at once."""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from typing import BinaryIO, Callable

from llmjax.config import UserError

_FULL = (errno.ENOSPC, errno.EDQUOT)


def write_error(what: str, e: OSError, fix: str) -> UserError:
    """The one-line error of a failed write: `what` failed, why, and the fix (a full disk's own)."""
    if e.errno in _FULL:
        return UserError(f"{what}: the disk is full: free space, then run the same command again")
    return UserError(f"{what}: {e.strerror or e}: {fix}")


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call write(f) on a temporary file, fsync it, then rename it over path."""
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)  # a partial file would keep a full disk full
        raise write_error(f"cannot write {path}", e, "make its directory writable, then run the "
                                                     "same command again") from e


LOCK = ".lock"


@contextlib.contextmanager
def locked(directory: str):
    """One builder at a time in directory (runs of a sweep sharing it); the others wait."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, LOCK), "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
