"""Writing files atomically and hashing them: the one routine of each that every module uses."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path


def _temp_beside(path: Path) -> Path:
    """Create an empty, new ``.<name>.<random>.tmp`` file beside ``path`` with mode ``0666`` less the
    umask (``tempfile.mkstemp`` would make it ``0600``, and the rename keeps the mode)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries to disk, so a rename into it survives a crash."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on success flush it to disk (``fsync``), rename
    it over ``path`` and flush the folder, so a crash leaves the old file or the new one, never a mix.
    On an exception the temporary file is deleted and ``path`` is untouched.

    The file ends up with mode ``0666`` less the umask, whatever wrote it. Temporary names have the
    shape ``.<name>.<random>.tmp`` (what :func:`recsys_assets.storage.remove_orphan_temp_files` cleans).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    fsync_dir(path.parent)


def file_hash(path: str | Path, algorithm: str = "blake2b", digest_size: int = 16) -> str:
    """Hex digest of a file's bytes, streamed: blake2b with ``digest_size`` bytes (default 128 bits), or
    any other :func:`hashlib.new` algorithm (``"sha256"``, ``"md5"``; ``digest_size`` then ignored)."""
    if algorithm == "blake2b":

        def new():
            return hashlib.blake2b(digest_size=digest_size)
    else:

        def new():
            return hashlib.new(algorithm)

    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, new).hexdigest()
