"""Atomic writes: a failed write (full disk, no permission) keeps the old file, leaves no
temporary one, and is one line naming the file and the fix."""
import errno
import os

import pytest

from llmjax.config import UserError
from llmjax.data.atomic import atomic_write


def test_a_write_replaces_the_file(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"old")
    atomic_write(str(path), lambda f: f.write(b"new"))
    assert path.read_bytes() == b"new" and os.listdir(tmp_path) == ["f"]


@pytest.mark.parametrize("error, fix", [
    (OSError(errno.ENOSPC, "No space left on device"), "the disk is full: free space"),
    (PermissionError(errno.EACCES, "Permission denied"), "Permission denied: make"),
])
def test_a_failed_write_keeps_the_old_file_and_is_one_line(tmp_path, error, fix):
    path = tmp_path / "f"
    path.write_bytes(b"old")

    def write(f):
        f.write(b"part")
        raise error
    with pytest.raises(UserError, match=f"cannot write {path}: {fix}") as e:
        atomic_write(str(path), write)
    assert "\n" not in str(e.value)
    assert path.read_bytes() == b"old" and os.listdir(tmp_path) == ["f"]
