"""Content fingerprints of a source file or HetRec folder, with a stat cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from recsys_assets.core.files import atomic_path, file_hash
from recsys_assets.core.loaders.staging import LoadError, _require_file

_HETREC_FILES = ("user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat")


# --------------------------------------------------------------------------------------------------
# Fingerprints


def _cached_hash(path: Path, cache: Path | None) -> str:
    """Content hash of one file; with ``cache`` (a JSON file) reused while (size, mtime_ns, inode) hold."""
    if cache is None:
        return file_hash(path, digest_size=20)
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    key = str(path.resolve())
    try:
        entries = json.loads(cache.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        entries = {}
    entry = entries.get(key)
    if entry is not None and entry.get("stamp") == stamp:
        return entry["digest"]
    digest = file_hash(path, digest_size=20)
    entries[key] = {"stamp": stamp, "digest": digest}
    with atomic_path(cache) as tmp:
        tmp.write_text(json.dumps(entries, sort_keys=True), encoding="utf-8")
    return digest


def file_fingerprint(path: str | Path, cache: Path | None = None, source: str | None = None) -> str:
    """Content fingerprint of a source: blake2b-160 of the file's bytes (hex), read in 4 MiB blocks.

    For the ``hetrec`` source (a folder) it is the blake2b of the names and content hashes of the four
    files :func:`load_hetrec` reads; every other ``source`` must be a file. With ``source=None`` a
    folder is taken for HetRec. With ``cache`` (a JSON file), a file whose (size, mtime_ns, inode) is
    unchanged is not read again; a ``touch`` re-hashes and yields the same fingerprint.
    """
    path = Path(path)
    if source == "hetrec" or (source is None and path.is_dir()):
        if not path.is_dir():
            raise LoadError(f"{path}: not a folder; pass the unzipped hetrec2011-lastfm-2k folder")
        digest = hashlib.blake2b(digest_size=20)
        for name in _HETREC_FILES:
            _require_file(path / name, "pass the unzipped hetrec2011-lastfm-2k folder")
            digest.update(f"{name}\0{_cached_hash(path / name, cache)}\0".encode())
        return digest.hexdigest()
    _require_file(path, f"the {source} source reads one file; give its path" if source else "check the path")
    return _cached_hash(path, cache)
