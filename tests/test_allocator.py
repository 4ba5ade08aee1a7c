"""The main job re-executes itself once with malloc on transparent huge pages, same pid."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Prints what it sees, then enters the real entry point (which exits 0 on --help).
SCRIPT = ("import os, sys; print('seen', os.getpid(), os.environ.get('GLIBC_TUNABLES'), flush=True); "
          "from llmjax import main; sys.argv[1:] = ['--help']; main.run()")

pytestmark = pytest.mark.skipif(not hasattr(os, "confstr") or "glibc" not in
                                (os.confstr("CS_GNU_LIBC_VERSION") or ""), reason="glibc only")


def _seen(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "LLMJAX_NO_REEXEC")}
    p = subprocess.Popen([sys.executable, "-c", SCRIPT], cwd=ROOT, env={**base, **env},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 0, err
    return p.pid, [line.split(" ", 2)[1:] for line in out.splitlines() if line.startswith("seen ")]


def test_main_reexecs_once_with_hugetlb_in_the_same_process():
    pid, seen = _seen(GLIBC_TUNABLES="glibc.malloc.arena_max=2")
    assert seen == [[str(pid), "glibc.malloc.arena_max=2"],
                    [str(pid), "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"]]


def test_already_set_or_opted_out_runs_once():
    pid, seen = _seen(GLIBC_TUNABLES="glibc.malloc.hugetlb=0")
    assert seen == [[str(pid), "glibc.malloc.hugetlb=0"]]
    pid, seen = _seen(LLMJAX_NO_REEXEC="1")
    assert seen == [[str(pid), "None"]]
