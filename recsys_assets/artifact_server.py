"""The report pages over http: a read-only file server for ``$RECSYS_HOME/artifacts`` (no Dagster).

The Dagster UI links metadata with ``MetadataValue.url``, and a browser does not follow a ``file://``
link from an ``http://`` page, so ``recsys ui`` starts this server beside the webserver and the
``evaluation_report`` asset links its pages (the HTML report, the t-SNE artist maps) at
:func:`artifact_url`. What it serves, and nothing else:

- files directly or deeper under the artifacts folder whose real path (symbolic links resolved) is
  inside that folder, with a suffix of :data:`SERVED_SUFFIXES` (the report pages and their images;
  not the factors, matrices or indexes that sit beside them);
- GET and HEAD only (any other method is answered 501); no directory listings;
- on 127.0.0.1 only, at ``[ui] artifacts_port``.

Run as ``python -m recsys_assets.artifact_server ROOT PORT --parent-pid PID`` it serves until the
process ``PID`` ends (``recsys ui`` passes its own pid, which ``dagster dev`` inherits by exec), so it
never outlives the UI.
"""

from __future__ import annotations

import argparse
import functools
import os
import subprocess
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass
from http import HTTPStatus
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, BinaryIO, ClassVar

from recsys_assets.core.sections import Range, Section, SettingsError

HOST = "127.0.0.1"
SERVED_SUFFIXES = (".html", ".png", ".svg")
Port = Annotated[int, Range(ge=1, le=65535)]


@dataclass(frozen=True)
class UiSettings(Section):
    """Where ``recsys ui`` listens (never changes a result, so never part of a fingerprint)."""

    TABLE: ClassVar[str] = "ui"

    # The Dagster webserver (`recsys ui --port` overrides it).
    port: Port = 3000
    # The report pages (evaluation report, artist maps) that the asset pages link to.
    artifacts_port: Port = 3001

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.port == self.artifacts_port:
            raise SettingsError(
                f"[ui] artifacts_port = {self.artifacts_port}: must differ from [ui] port = {self.port}"
            )


class ArtifactServerError(RuntimeError):
    """The report server could not start (the port is taken, the folder is unreadable, ...)."""


def artifact_url(port: int, name: str) -> str:
    """The http address of the artifact ``name`` (a path relative to the artifacts folder)."""
    return f"http://{HOST}:{port}/{urllib.parse.quote(name)}"


class ArtifactHandler(SimpleHTTPRequestHandler):
    """Serves the report pages under ``directory`` read-only; see the module docstring for the rule."""

    def _target(self) -> Path | None:
        """The file a request names, or ``None`` when it is not one this server serves."""
        root = Path(self.directory).resolve()
        # translate_path decodes %-escapes and drops "..", "." and drive parts: it stays under root,
        # except through a symbolic link, which resolve() follows.
        target = Path(self.translate_path(self.path)).resolve()
        if not target.is_relative_to(root) or target == root:
            return None
        if target.suffix.lower() not in SERVED_SUFFIXES or not target.is_file():
            return None
        return target

    def send_head(self) -> BinaryIO | None:  # type: ignore[override]
        target = self._target()
        if target is None:
            self.send_error(HTTPStatus.NOT_FOUND, "not a report page of this RECSYS_HOME")
            return None
        try:
            handle = open(target, "rb")  # noqa: SIM115  (closed by the base class after copying)
        except OSError:
            self.send_error(HTTPStatus.NOT_FOUND, "not a report page of this RECSYS_HOME")
            return None
        stat = os.fstat(handle.fileno())
        kind = self.guess_type(str(target))
        self.send_response(HTTPStatus.OK)
        # The pipeline writes its pages as UTF-8.
        self.send_header("Content-Type", f"{kind}; charset=utf-8" if kind.startswith("text/") else kind)
        self.send_header("Content-Length", str(stat.st_size))
        self.send_header("Last-Modified", self.date_time_string(stat.st_mtime))
        # Every refresh rewrites the report under the same name: always ask again.
        self.send_header("Cache-Control", "no-cache")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        return handle

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        """Quiet: the UI's own log is what a person watches."""


def make_server(root: Path, port: int, host: str = HOST) -> ThreadingHTTPServer:
    """An http server for the report pages under ``root`` on ``host:port`` (``port`` 0 = any free
    one: read it from ``server.server_address``); call ``serve_forever`` to run it."""
    handler = functools.partial(ArtifactHandler, directory=str(Path(root).resolve()))
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve_in_background(root: Path, port: int) -> subprocess.Popen:
    """Start the server for ``root`` on 127.0.0.1:``port`` in a child process that ends with this
    process (or with whatever this process execs into); raise :class:`ArtifactServerError` with the
    child's one-line reason when it cannot listen."""
    Path(root).mkdir(parents=True, exist_ok=True)
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "recsys_assets.artifact_server",
            str(root),
            str(port),
            "--parent-pid",
            str(os.getpid()),
        ],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert child.stdout is not None
    first = child.stdout.readline().strip()
    child.stdout.close()
    if first != "ready":
        child.wait(timeout=10)
        raise ArtifactServerError(first or f"the report server exited with status {child.returncode}")
    return child


def _end_with_parent(server: ThreadingHTTPServer, parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(0.5)
    server.shutdown()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="serve $RECSYS_HOME/artifacts' report pages read-only")
    parser.add_argument("root")
    parser.add_argument("port", type=int)
    parser.add_argument("--parent-pid", type=int, default=None, help="stop when this process ends")
    args = parser.parse_args(argv)
    try:
        server = make_server(Path(args.root), args.port)
    except OSError as exc:
        print(
            f"cannot serve the report pages on {HOST}:{args.port}: {exc.strerror or exc} "
            "(set [ui] artifacts_port to a free port)",
            flush=True,
        )
        return 1
    print("ready", flush=True)
    # The reader of that line may be gone (exec'd into dagster dev): never write to it again.
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if args.parent_pid is not None:
        threading.Thread(target=_end_with_parent, args=(server, args.parent_pid), daemon=True).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:  # Ctrl-C in the terminal of `recsys ui` reaches the whole group
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
