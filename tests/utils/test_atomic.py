"""Atomic writes: all or nothing, usual permissions."""
from __future__ import annotations

import os
import stat

import pytest

from lavit_pl.utils.atomic import atomic_open, atomic_write_json, atomic_write_text


def test_failed_write_leaves_old_file_and_no_temp(tmp_path):
    path = tmp_path / "out.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(path) as handle:
            handle.write("{broken")
            raise RuntimeError("interrupted")
    assert path.read_text() == '{\n  "a": 1\n}\n'
    assert sorted(os.listdir(tmp_path)) == ["out.json"]


def test_permissions_follow_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
