"""The progress reporter: periodic plain lines off a terminal, a throttled rich bar on one, the same
lines into a log, and the ingest scan reporting through it."""

from __future__ import annotations

import io
import re
import time

import duckdb

from recsys_assets.core.loaders import load_lastfm360k
from recsys_assets.progress import Progress


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_lines_mode_reports_periodically_with_count_rate_and_time_left():
    clock, stream, logged = FakeClock(), io.StringIO(), []
    progress = Progress("evaluate als", 60_000, unit="users", stream=stream, clock=clock, log=logged.append)
    assert progress.display == "lines"  # a StringIO is not a terminal
    for step in range(1, 601):  # 100 users every 0.1 s: 60 s in all
        clock.now = step * 0.1
        progress(step * 100)
    progress.close()
    lines = stream.getvalue().splitlines()
    # One line every 10 s (at 10, 20, ..., 60 s), then the step's last line.
    assert len(lines) == 7 and logged == lines
    assert lines[0] == "evaluate als: 10,000/60,000 users (17%), 1,000 users/s, 50 s left"
    assert lines[-1] == "evaluate als: done 60,000/60,000 users (100%), 1,000 users/s, in 1 min 00 s"


def test_updates_are_throttled_and_cheap():
    clock, stream = FakeClock(), Terminal()
    progress = Progress("als fit", 1_000_000, unit="iterations", stream=stream, clock=clock, min_interval=0.5)
    assert progress.display == "bar"
    draws = []
    progress._bar.draw = lambda: draws.append(clock.now)  # count redraws of the rich bar
    for step in range(1, 10_001):  # 10,000 reports over 5 s
        clock.now = step * 0.0005
        progress(step)
    # At most one redraw per 0.5 s: the first report, then every 1,000th.
    assert len(draws) == 10 and all(b - a >= 0.5 - 1e-9 for a, b in zip(draws, draws[1:], strict=False))
    progress._bar = None
    progress.close()
    # A report that does not redraw costs well under a microsecond-scale budget (measured: ~0.3 us).
    idle = Progress("x", 10, display="off", min_interval=3600)
    start = time.perf_counter()
    for i in range(100_000):
        idle(i)
    per_call = (time.perf_counter() - start) / 100_000
    assert per_call < 20e-6, per_call


def test_bar_mode_draws_with_rich_and_fit_callback_reports_loss():
    stream = Terminal()
    with Progress("als fit", unit="iterations", stream=stream, min_interval=0) as progress:
        callback = progress.fit_callback()
        for step in range(1, 16):
            callback(step, 15, 100.0 / step, 0.01)
    text = stream.getvalue()
    assert "\x1b[" in text  # drawn with terminal control sequences
    assert "15/15 iterations (100%)" in text and "loss 6.66667" in text


def test_ingest_scan_reports_bytes_and_lines(tmp_path, monkeypatch):
    import recsys_assets.core.loaders.scanner as scanner

    monkeypatch.setattr(scanner, "_CHUNK_BYTES", 4096)  # many blocks from a small file
    path = tmp_path / "plays.tsv"
    lines = [f"user{u}\t\tartist{a}\t{u + a + 1}" for u in range(100) for a in range(30)]
    path.write_text("\n".join(lines) + "\n")
    seen = []

    def progress(done, total, **info):
        seen.append((done, total, info["lines"]))

    with duckdb.connect() as conn:
        load_lastfm360k(conn, path, threads=2, progress=progress)
    size = path.stat().st_size
    assert len(seen) > 10 and seen[-1] == (size, size, len(lines))
    assert all(a[0] < b[0] and a[2] < b[2] for a, b in zip(seen, seen[1:], strict=False))
    stream = io.StringIO()
    with duckdb.connect() as conn, Progress("ingest", unit="B", stream=stream, line_interval=0) as reporter:
        load_lastfm360k(conn, path, threads=1, progress=reporter)
    assert re.search(
        r"ingest: done [\d.]+ KiB of [\d.]+ KiB \(100%\), .* lines 3,000$", stream.getvalue().strip()
    )
