"""Atomic writes: all or nothing, with the usual file permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from xmem.io.atomic import atomic_write


def test_written_file_has_umask_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        import importlib

        import xmem.io.atomic as atomic

        importlib.reload(atomic)
        with atomic.atomic_write(tmp_path / "a.bin") as f:
            f.write(b"x")
    finally:
        os.umask(old)
        importlib.reload(atomic)
    assert stat.S_IMODE((tmp_path / "a.bin").stat().st_mode) == 0o644


def test_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "m.png"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"new, half written")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["m.png"]
