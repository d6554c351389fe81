"""Content fingerprints of a source file or HetRec folder, with a stat cache."""

from __future__ import annotations

import hashlib
from pathlib import Path

from recsys_assets.core.files import FileHashCache, file_hash
from recsys_assets.core.loaders.staging import LoadError, _require_file

_KIND = "blake2b-160"
_HETREC_FILES = ("user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat")


# --------------------------------------------------------------------------------------------------
# Fingerprints


def _content_hash(path: Path) -> str:
    return file_hash(path, digest_size=20)


def file_fingerprint(path: str | Path, cache: Path | None = None, source: str | None = None) -> str:
    """Content fingerprint of a source: blake2b-160 of the file's bytes (hex).

    For the ``hetrec`` source (a folder) it is the blake2b of the names and content hashes of the four
    files :func:`load_hetrec` reads; every other ``source`` must be a file. With ``source=None`` a
    folder is taken for HetRec. With ``cache`` (a JSON file, see :class:`FileHashCache`), a file whose
    (size, mtime_ns, ctime_ns, inode) is unchanged is not read again; a ``touch`` re-hashes and yields
    the same fingerprint.
    """
    path = Path(path)
    hashes = FileHashCache(cache)
    if source == "hetrec" or (source is None and path.is_dir()):
        if not path.is_dir():
            raise LoadError(f"{path}: not a folder; pass the unzipped hetrec2011-lastfm-2k folder")
        digest = hashlib.blake2b(digest_size=20)
        for name in _HETREC_FILES:
            _require_file(path / name, "pass the unzipped hetrec2011-lastfm-2k folder")
            digest.update(f"{name}\0{hashes.get(path / name, _KIND, _content_hash)}\0".encode())
        fingerprint = digest.hexdigest()
    else:
        _require_file(
            path, f"the {source} source reads one file; give its path" if source else "check the path"
        )
        fingerprint = hashes.get(path, _KIND, _content_hash)
    hashes.save()
    return fingerprint
