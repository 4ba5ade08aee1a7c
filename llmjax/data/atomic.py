"""Atomic file writes: a crash leaves the old file or the new one, never half of one."""
from __future__ import annotations

import os
from typing import BinaryIO, Callable


def atomic_write(path: str, write: Callable[[BinaryIO], object]) -> None:
    """Call write(f) on a temporary file, fsync it, then rename it over path."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
