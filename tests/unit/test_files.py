"""Atomic writes: no partial file on failure, and ordinary permissions (not mkstemp's private 0600)."""
from __future__ import annotations

import os

import pytest

from rvar.files import atomic_write


def test_atomic_write_has_plain_file_permissions(tmp_path):
    mask = os.umask(0o022)
    try:
        path = atomic_write(tmp_path / "sub" / "out.bin", lambda handle: handle.write(b"data"))
    finally:
        os.umask(mask)
    assert path.read_bytes() == b"data"
    assert os.stat(path).st_mode & 0o777 == 0o644


def test_failed_write_leaves_nothing(tmp_path):
    def boom(handle):
        handle.write(b"partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "out.bin", boom)
    assert list(tmp_path.iterdir()) == []
