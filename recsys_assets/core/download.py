"""Download source files: streamed to a temporary file, checksum verified, renamed into place."""

from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from recsys_assets.core.files import atomic_path, file_hash

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


def download_file(url: str, dest: Path, sha256: str | None, timeout: float = 60) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    The body is streamed into a temporary file next to ``dest``; when ``sha256`` is given its hex digest
    must match (case-insensitive) before the file is atomically renamed to ``dest``. On any failure
    (HTTP error, timeout, checksum mismatch) ``dest`` is left as it was and the temporary file removed.

    Raises:
        DownloadError: with the URL and the HTTP status, or both checksums on a mismatch.
    """
    dest = Path(dest)
    digest = hashlib.sha256()
    with atomic_path(dest) as tmp, open(tmp, "wb") as out:
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
            with atomic_path(target) as tmp:
                with open(tmp, "wb") as out:
                    shutil.copyfileobj(source, out, _BLOCK)
                if tsv_md5 is not None and (got := file_hash(tmp, "md5")) != tsv_md5.lower():
                    raise DownloadError(
                        f"{url}: {LASTFM360K_TSV} has MD5 {got}, expected {tsv_md5.lower()}; the archive is "
                        "corrupt or not the Last.fm-360K release"
                    )
    finally:
        archive.unlink(missing_ok=True)
    return target
