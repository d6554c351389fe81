"""Tests for downloads against a local HTTP server serving files made in the test."""

from __future__ import annotations

import functools
import hashlib
import http.server
import io
import os
import tarfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from recsys_assets.core.download import LASTFM360K_TSV, DownloadError, download_file, fetch_lastfm360k

TSV = b"u1\tm1\tArtist A\t10\nu2\t\tArtist B\t3\n"


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base class signature
        """Keep test output quiet."""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder served) of an HTTP server on 127.0.0.1, a random port, in a thread."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", root
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _make_archive(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_download_success_with_checksum(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    payload = bytes(range(256)) * 5000  # > one 1 MiB block
    (root / "f.bin").write_bytes(payload)
    dest = tmp_path / "out" / "f.bin"
    assert download_file(f"{url}/f.bin", dest, hashlib.sha256(payload).hexdigest().upper()) == dest
    assert dest.read_bytes() == payload
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]  # no temporary file left


def test_downloaded_files_get_the_usual_mode(served: tuple[str, Path], tmp_path: Path) -> None:
    """0666 less the umask, as for every file written atomically (mkstemp alone made them 0600)."""
    url, root = served
    (root / "f.bin").write_bytes(b"data")
    saved = os.umask(0o022)
    try:
        dest = download_file(f"{url}/f.bin", tmp_path / "f.bin", None)
    finally:
        os.umask(saved)
    assert oct(dest.stat().st_mode & 0o777) == oct(0o644)


def test_checksum_mismatch_keeps_existing_file(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    (root / "f.bin").write_bytes(b"new content")
    dest = tmp_path / "out" / "f.bin"
    dest.parent.mkdir()
    dest.write_bytes(b"old content")
    with pytest.raises(DownloadError, match="SHA-256 mismatch") as info:
        download_file(f"{url}/f.bin", dest, "0" * 64)
    assert hashlib.sha256(b"new content").hexdigest() in str(info.value)
    assert dest.read_bytes() == b"old content"
    assert [p.name for p in dest.parent.iterdir()] == ["f.bin"]


def test_http_404(served: tuple[str, Path], tmp_path: Path) -> None:
    url, _ = served
    dest = tmp_path / "out" / "missing.bin"
    with pytest.raises(DownloadError, match="HTTP 404"):
        download_file(f"{url}/missing.bin", dest, None)
    assert list(dest.parent.iterdir()) == []


def test_fetch_lastfm360k_extracts_tsv(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    archive = root / "lastfm.tar.gz"
    _make_archive(
        archive, {"lastfm-dataset-360K/README.txt": b"readme", f"lastfm-dataset-360K/{LASTFM360K_TSV}": TSV}
    )
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    dest = tmp_path / "data"
    path = fetch_lastfm360k(
        dest, url=f"{url}/lastfm.tar.gz", sha256=sha, tsv_md5=hashlib.md5(TSV).hexdigest()
    )
    assert path == dest / LASTFM360K_TSV
    assert path.read_bytes() == TSV
    assert sorted(p.name for p in dest.iterdir()) == [LASTFM360K_TSV]  # archive removed, nothing else
    # Present already: no download (the server's file is gone, yet it succeeds).
    archive.unlink()
    assert fetch_lastfm360k(dest, url=f"{url}/lastfm.tar.gz", sha256=sha) == path


def test_fetch_lastfm360k_wrong_content(served: tuple[str, Path], tmp_path: Path) -> None:
    url, root = served
    _make_archive(root / "a.tar.gz", {f"x/{LASTFM360K_TSV}": TSV})
    _make_archive(root / "b.tar.gz", {"x/other.tsv": TSV})
    with pytest.raises(DownloadError, match="MD5"):
        fetch_lastfm360k(tmp_path / "a", url=f"{url}/a.tar.gz", sha256=None)  # README's MD5 != fixture
    with pytest.raises(DownloadError, match="has no"):
        fetch_lastfm360k(tmp_path / "b", url=f"{url}/b.tar.gz", sha256=None, tsv_md5=None)
    assert list((tmp_path / "a").iterdir()) == [] and list((tmp_path / "b").iterdir()) == []
