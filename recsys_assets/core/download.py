"""Download source files: streamed to a temporary file, checksum verified, renamed into place."""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

LASTFM360K_URL = "http://mtg.upf.edu/static/datasets/last.fm/lastfm-dataset-360K.tar.gz"
# No SHA-256 of the archive is published (the dataset's README gives MD5s of the files inside it, and
# none was found for the .tar.gz itself), so the archive is not pinned; pass sha256= to pin one.
LASTFM360K_SHA256: str | None = None
# MD5 of usersha1-artmbid-artname-plays.tsv as stated in the dataset's own README (version 1.2).
LASTFM360K_TSV_MD5 = "be672526eb7c69495c27ad27803148f1"
LASTFM360K_TSV = "usersha1-artmbid-artname-plays.tsv"

_BLOCK = 1 << 20


class DownloadError(OSError):
    """A download failed or its content does not match the expected checksum."""


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def _usual_mode(fd: int) -> None:
    """Give a ``mkstemp`` file (``0600``) the mode of any new file, ``0666`` less the umask, before it is
    renamed into place: the data is often read by another user (the same rule as the artifacts)."""
    umask = os.umask(0)
    os.umask(umask)
    os.fchmod(fd, 0o666 & ~umask)


def download_file(url: str, dest: Path, sha256: str | None, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The body is streamed into a temporary file next to ``dest``; when ``sha256`` is given its hex digest
    must match (case-insensitive) before the file is atomically renamed to ``dest``. On any failure
    (HTTP error, timeout, checksum mismatch) ``dest`` is left as it was and the temporary file removed.

    Raises:
        DownloadError: with the URL and the HTTP status, or both checksums on a mismatch.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    _usual_mode(fd)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - http(s) URLs
                    while block := response.read(_BLOCK):
                        digest.update(block)
                        out.write(block)
            except urllib.error.HTTPError as exc:
                raise DownloadError(f"{url}: HTTP {exc.code} {exc.reason}; check the URL") from exc
            except (urllib.error.URLError, TimeoutError) as exc:
                raise DownloadError(f"{url}: download failed ({exc}); check the network or the URL") from exc
        if sha256 is not None and digest.hexdigest() != sha256.lower():
            raise DownloadError(
                f"{url}: SHA-256 mismatch, got {digest.hexdigest()}, expected {sha256.lower()}; the download "
                "is corrupt or the file changed upstream (verify it and pass the new checksum)"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def fetch_lastfm360k(
    dest_dir: Path,
    url: str = LASTFM360K_URL,
    sha256: str | None = LASTFM360K_SHA256,
    tsv_md5: str | None = LASTFM360K_TSV_MD5,
) -> Path:
    """Download the Last.fm-360K archive into ``dest_dir`` and extract the plays TSV; return its path.

    Skips the download when the TSV is already there. The archive member whose name ends in
    ``usersha1-artmbid-artname-plays.tsv`` is extracted (alone) to ``dest_dir / LASTFM360K_TSV`` via a
    temporary file; with ``tsv_md5`` its MD5 must match the README's. The archive is deleted afterwards.

    Raises:
        DownloadError: download failure, checksum mismatch, or the archive lacks the TSV.
    """
    dest_dir = Path(dest_dir)
    target = dest_dir / LASTFM360K_TSV
    if target.is_file():
        return target
    archive = download_file(url, dest_dir / "lastfm-dataset-360K.tar.gz", sha256)
    try:
        with tarfile.open(archive, "r:gz") as tar:
            member = next(
                (m for m in tar.getmembers() if m.isfile() and m.name.endswith("/" + LASTFM360K_TSV)), None
            )
            if member is None:
                raise DownloadError(f"{url}: the archive has no {LASTFM360K_TSV}; check the URL")
            source = tar.extractfile(member)
            assert source is not None  # a regular file member always has content
            fd, tmp_name = tempfile.mkstemp(prefix=f".{LASTFM360K_TSV}.", suffix=".part", dir=dest_dir)
            _usual_mode(fd)
            tmp = Path(tmp_name)
            try:
                with os.fdopen(fd, "wb") as out:
                    shutil.copyfileobj(source, out, _BLOCK)
                if tsv_md5 is not None and (got := _digest(tmp, "md5")) != tsv_md5.lower():
                    raise DownloadError(
                        f"{url}: {LASTFM360K_TSV} has MD5 {got}, expected {tsv_md5.lower()}; the archive is "
                        "corrupt or not the Last.fm-360K release"
                    )
                os.replace(tmp, target)
            finally:
                tmp.unlink(missing_ok=True)
    finally:
        archive.unlink(missing_ok=True)
    return target
