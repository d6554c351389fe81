"""Writing files atomically, hashing them, and remembering their hashes: the one routine of each."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any


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


class FileHashCache:
    """Content hashes of files, remembered per (size, mtime_ns, ctime_ns, inode), so verifying an
    unchanged ~1 GB artifact folder costs a ``stat`` per file instead of reading it.

    Any write to a file changes its ctime (which no user call can set back), and a replaced file has a
    new inode. An entry is not remembered while the file's mtime is within ``RACY_SECONDS`` of now: a
    write in the same clock tick could otherwise leave every stamp unchanged (git's "racy" rule).
    ``path=None`` keeps nothing; ``writable=False`` reads the cache but never writes it.
    """

    RACY_SECONDS = 2.0

    def __init__(self, path: Path | None, writable: bool = True):
        self.path, self.writable = path, writable
        self._entries: dict[str, Any] = {}
        self._dirty = False
        if path is not None:
            try:
                loaded = json.loads(path.read_text())
                self._entries = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._entries = {}

    def get(self, file: Path, kind: str, compute: Callable[[Path], str]) -> str:
        """``compute(file)``, or the value remembered for this file, ``kind`` and stamp."""
        st = file.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = f"{kind}:{file.resolve()}"
        entry = self._entries.get(key)
        if entry is not None and entry.get("stamp") == stamp:
            return entry["hash"]
        value = compute(file)
        if time.time() - st.st_mtime > self.RACY_SECONDS:
            self._entries[key] = {"stamp": stamp, "hash": value}
            self._dirty = True
        return value

    def save(self) -> None:
        """Write the cache (atomically) if it is writable and changed."""
        if self.path is None or not self.writable or not self._dirty:
            return
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self._entries))
        self._dirty = False
