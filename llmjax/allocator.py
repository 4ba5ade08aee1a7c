"""Malloc on transparent huge pages for the whole process, by re-executing it once.

XLA:CPU mallocs and frees its temporaries every step; glibc hands the freed memory back to the
kernel and takes a minor page fault per 4 KiB page when it is touched again (tens of thousands
a step). GLIBC_TUNABLES=glibc.malloc.hugetlb=1 makes malloc ask for transparent huge pages,
which removes nearly all of them. glibc reads the variable only at process start, so the
process re-executes itself with it: os.execve keeps the pid, so launchers, `time` and
schedulers still see one process. Opt out with LLMJAX_NO_REEXEC=1.
"""
from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb"
OPT_OUT = "LLMJAX_NO_REEXEC"
_DONE = "LLMJAX_REEXECED"  # set in the re-executed process: never a second time, whatever glibc does
_MIN_GLIBC = (2, 35)  # the first glibc with glibc.malloc.hugetlb


def _glibc_version() -> tuple[int, ...] | None:
    try:
        name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
        return tuple(int(x) for x in version.split(".")[:2]) if name == "glibc" else None
    except (AttributeError, ValueError, OSError):  # not Linux/glibc (no confstr, or no such name)
        return None


def reexec_with_huge_pages() -> None:
    """Re-run this very command (interpreter, its options and argv) with glibc.malloc.hugetlb=1
    appended to GLIBC_TUNABLES; a no-op when it is set already, opted out, done once, or not glibc.
    Call it first thing, before anything large is imported or any output is pending."""
    env = os.environ
    tunables = env.get("GLIBC_TUNABLES", "")
    version = _glibc_version()
    if (TUNABLE in tunables or env.get(OPT_OUT, "") not in ("", "0") or _DONE in env
            or version is None or version < _MIN_GLIBC):
        return
    new_env = {**env, "GLIBC_TUNABLES": f"{tunables}:{TUNABLE}=1" if tunables else f"{TUNABLE}=1",
               _DONE: "1"}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], new_env)
