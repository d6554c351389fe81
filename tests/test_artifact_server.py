"""The report pages over http (`recsys ui`'s artifact server): what it serves, what it refuses, and
that it starts with the UI and ends with it."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from recsys_assets.artifact_server import (
    ArtifactServerError,
    artifact_url,
    make_server,
    serve_in_background,
)

PAGE = "<!doctype html><meta charset='utf-8'><title>report</title><p>Björk · Sigur Rós</p>"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One raw request (http.client sends ``path`` exactly as given, "..", %-escapes and all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


@pytest.fixture
def served(tmp_path):
    """A server on a free port for ``tmp_path/home/artifacts``, holding a report, an image, a factor file
    and a link out; beside the artifacts folder, a secret page it must never serve."""
    home = tmp_path / "home"
    root = home / "artifacts"
    (root / "maps").mkdir(parents=True)
    (root / "evaluation_report.html").write_text(PAGE, encoding="utf-8")
    (root / "maps" / "artist_map_als.html").write_text("<p>map</p>", encoding="utf-8")
    (root / "chart.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    (root / "als_factors.npz").write_bytes(b"factors")
    secret = home / "secret.html"
    secret.write_text("SECRET", encoding="utf-8")
    (root / "escape.html").symlink_to(secret)
    (root / "inside_link.html").symlink_to(root / "evaluation_report.html")
    server = make_server(root, 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1], root
    finally:
        server.shutdown()
        server.server_close()


def test_serves_the_report_pages_as_written(served):
    port, root = served
    status, headers, body = _request(port, "/evaluation_report.html")
    assert status == 200 and body == PAGE.encode("utf-8")
    assert headers["Content-Type"] == "text/html; charset=utf-8"
    assert headers["Cache-Control"] == "no-cache"
    status, headers, body = _request(port, "/evaluation_report.html", "HEAD")
    assert status == 200 and body == b"" and int(headers["Content-Length"]) == len(PAGE.encode("utf-8"))
    assert _request(port, "/maps/artist_map_als.html")[2] == b"<p>map</p>"
    assert _request(port, "/chart.png")[1]["Content-Type"] == "image/png"
    # A link that stays inside the folder is followed.
    assert _request(port, "/inside_link.html")[2] == PAGE.encode("utf-8")
    # The url the asset metadata carries names the same file.
    assert (
        artifact_url(port, "maps/artist_map_als.html") == f"http://127.0.0.1:{port}/maps/artist_map_als.html"
    )


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.html",
        "/%2e%2e/secret.html",
        "/..%2fsecret.html",
        "/maps/../../secret.html",
        "//etc/passwd",
        "/escape.html",  # a symbolic link out of the folder
        "/als_factors.npz",  # not a report page
        "/",  # no directory listings
        "/maps/",
        "/missing.html",
    ],
)
def test_refuses_everything_else(served, path):
    port, _ = served
    status, _, body = _request(port, path)
    assert status == 404, path
    assert b"SECRET" not in body and b"factors" not in body and b"artist_map" not in body


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_is_read_only(served, method):
    port, root = served
    before = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert _request(port, "/evaluation_report.html", method)[0] == 501
    assert {p: p.read_bytes() for p in root.rglob("*") if p.is_file()} == before


def test_a_taken_port_is_a_one_line_error_naming_the_setting(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ArtifactServerError, match=rf"127\.0\.0\.1:{port}: .*\[ui\] artifacts_port"):
            serve_in_background(tmp_path / "artifacts", port)


def test_background_server_ends_with_the_process_that_started_it(tmp_path):
    """`recsys ui` execs into dagster dev: the server must end when that process does, even killed."""
    port = _free_port()
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / "r.html").write_text("ok")
    starter = textwrap.dedent(
        f"""
        import time
        from recsys_assets.artifact_server import serve_in_background
        serve_in_background({str(tmp_path / "artifacts")!r}, {port})
        print("started", flush=True)
        time.sleep(600)
        """
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", starter], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert parent.stdout.readline().strip() == "started"
        assert _request(port, "/r.html")[2] == b"ok"
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _request(port, "/r.html")
        except OSError:
            return  # nothing listens any more
        time.sleep(0.2)
    pytest.fail(f"the report server on port {port} outlived the process that started it")


def test_recsys_ui_starts_the_report_server_on_the_settings_port(tmp_path, monkeypatch, capsys):
    """`recsys ui` serves $RECSYS_HOME/artifacts on [ui] artifacts_port, then execs dagster dev on [ui]
    port (the exec is replaced here by a check that the pages are served)."""
    from recsys_assets import artifact_server
    from recsys_assets.cli import main

    ui_port, pages_port = _free_port(), _free_port()
    config = tmp_path / "recsys.toml"
    config.write_text(f"[ui]\nport = {ui_port}\nartifacts_port = {pages_port}\n")
    home = tmp_path / "home"
    (home / "artifacts").mkdir(parents=True)
    (home / "artifacts" / "evaluation_report.html").write_text(PAGE, encoding="utf-8")
    for name, value in (("RECSYS_CONFIG", config), ("RECSYS_HOME", home), ("DAGSTER_HOME", tmp_path / "dg")):
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv("PYTHONWARNINGS", raising=False)  # cmd_ui adds to it
    monkeypatch.chdir(tmp_path)  # and changes directory
    children: list[subprocess.Popen] = []
    start = artifact_server.serve_in_background

    def recorded(root: Path, port: int) -> subprocess.Popen:
        children.append(start(root, port))
        return children[-1]

    class Exec(BaseException):  # main() turns an Exception into exit status 1
        pass

    def fake_exec(program: str, argv: list[str]) -> None:
        assert _request(pages_port, "/evaluation_report.html")[2] == PAGE.encode("utf-8")
        raise Exec(argv)

    monkeypatch.setattr(artifact_server, "serve_in_background", recorded)
    monkeypatch.setattr(os, "execvp", fake_exec)
    monkeypatch.setattr("signal.signal", lambda *args: None)
    try:
        with pytest.raises(Exec) as execed:
            main(["ui"])
    finally:
        for child in children:
            child.terminate()
            child.wait(timeout=10)
    argv = execed.value.args[0]
    assert argv[1:3] == ["dev", "-w"] and argv[argv.index("-p") + 1] == str(ui_port)
    assert f"http://127.0.0.1:{pages_port}/" in capsys.readouterr().out
    # The UI's port may not be the pages' port.
    assert main(["ui", "--port", str(pages_port)]) == 1
    assert "[ui] artifacts_port" in capsys.readouterr().err
