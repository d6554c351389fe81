"""The one atomic writer and the one file hasher (core/files.py)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from recsys_assets.core import files
from recsys_assets.core.files import atomic_path, file_hash


def test_atomic_path_replaces_on_success_and_keeps_the_old_file_on_error(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.txt"
    with atomic_path(target) as tmp:
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.txt"]  # no temporary file left


def test_atomic_path_flushes_the_file_and_then_its_folder(tmp_path: Path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", recording_fsync)
    target = tmp_path / "a.bin"
    with atomic_path(target) as tmp:
        tmp.write_bytes(b"x")
        temporary = str(tmp)
    assert synced == [temporary, str(tmp_path)]


def test_file_hash_matches_hashlib_across_blocks(tmp_path: Path) -> None:
    data = os.urandom(3 << 20) + b"tail"  # several read blocks and a partial one
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_hash(path) == hashlib.blake2b(data, digest_size=16).hexdigest()
    assert file_hash(path, digest_size=20) == hashlib.blake2b(data, digest_size=20).hexdigest()
    assert file_hash(path, "sha256") == hashlib.sha256(data).hexdigest()
    assert file_hash(path, "md5") == hashlib.md5(data).hexdigest()
