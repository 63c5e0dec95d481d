"""Files are written whole or not at all, with the user's usual permissions."""

from __future__ import annotations

import os
import stat

import pytest

from babygan.atomic import atomic_path, write_text_atomic


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_file_gets_umask_permissions_not_mkstemp_0600(tmp_path):
    path = write_text_atomic(tmp_path / "out.json", "{}")
    # exactly what open() would give a new file under the user's umask (0644 under the usual
    # 022), not mkstemp's 0600, and never more than the umask allows
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~_current_umask()
    assert path.read_text() == "{}"


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    dest = tmp_path / "child.png"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert list(tmp_path.iterdir()) == []
