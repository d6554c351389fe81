"""Time load_lastfm360k on a Last.fm-format TSV into a fresh DuckDB file.

    .venv/bin/python bench/ingest.py --tsv /tmp/lastfm_synth.tsv [--make] [--memory-limit 4GB] [--threads 0]

``--make`` first writes the TSV with bench/make_lastfm_tsv.py's generator (360K x 300K, ~17.6M lines)
when it is missing. Prints lines, seconds (scan vs. the rest: staging, id maps, plays, DuckDB), the
scan's parallel phases (block scans summed over the worker threads, and the in-order merge on the
main thread), rows/s, peak RSS of this process and the peak of DuckDB's own accounting (sampled every
0.1 s), the load average, and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import threading
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_lastfm_tsv import write_lastfm_tsv  # noqa: E402

from recsys_assets.core import loaders  # noqa: E402
from recsys_assets.core.loaders import scanner, sources, staging  # noqa: E402
from recsys_assets.core.threads import resolve_threads  # noqa: E402


class _DuckDBMemorySampler(threading.Thread):
    """Polls DuckDB's memory accounting on a second cursor; keeps the maximum seen."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        super().__init__(daemon=True)
        self.cursor = conn.cursor()
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            (used,) = self.cursor.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
            self.peak = max(self.peak, int(used or 0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=Path("/tmp/lastfm_synth.tsv"))
    parser.add_argument("--make", action="store_true", help="write the TSV first if it is missing")
    parser.add_argument("--memory-limit", default="4GB")
    parser.add_argument("--threads", type=int, default=0, help="scan threads, as [runtime] threads (0: all)")
    args = parser.parse_args()
    if not args.tsv.exists():
        if not args.make:
            sys.exit(f"{args.tsv} not found; run with --make or bench/make_lastfm_tsv.py first")
        made = write_lastfm_tsv(args.tsv, 360_000, 300_000, 49.0, 0)
        print(f"made {made['lines']:,} lines in {made['total_s']} s")

    seconds_in: dict[str, float] = {"scan": 0.0, "blocks": 0.0, "merge": 0.0, "insert_plays": 0.0}
    lock = threading.Lock()

    def timed(name: str, fn):
        def wrapper(*a, **k):
            t = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                with lock:
                    seconds_in[name] += time.perf_counter() - t

        return wrapper

    sources._scan_file = timed("scan", scanner._scan_file)
    scanner._scan_block = timed("blocks", scanner._scan_block)  # on the worker threads, summed
    scanner._Merge.add = timed("merge", scanner._Merge.add)
    staging._insert_plays = timed("insert_plays", staging._insert_plays)
    threads = resolve_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="ingest-") as tmp:
        conn = duckdb.connect(str(Path(tmp) / "raw.duckdb"))
        conn.execute(f"SET memory_limit = '{args.memory_limit}'")
        conn.execute(f"SET temp_directory = '{tmp}/spill'")
        sampler = _DuckDBMemorySampler(conn)
        sampler.start()
        t0 = time.perf_counter()
        report = loaders.load_lastfm360k(conn, args.tsv, threads=args.threads)
        seconds = time.perf_counter() - t0
        sampler.done.set()
        sampler.join()
        db_bytes = (Path(tmp) / "raw.duckdb").stat().st_size
        conn.close()
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    scan_s = seconds_in["scan"]
    result = {
        "lines": report.lines_read,
        "rows_loaded": report.rows_loaded,
        "rows_rejected": report.rows_rejected,
        "n_users": report.n_users,
        "n_artists": report.n_artists,
        "n_plays": report.n_plays,
        "seconds": round(seconds, 2),
        "scan_seconds": round(scan_s, 2),
        "scan_threads": threads,
        "block_scan_seconds_summed": round(seconds_in["blocks"], 2),
        "merge_seconds": round(seconds_in["merge"], 2),
        "duckdb_seconds": round(seconds - scan_s, 2),
        "insert_plays_seconds": round(seconds_in["insert_plays"], 2),
        "rows_per_s": round(report.lines_read / seconds),
        "peak_rss_mb": round(peak_rss_mb),
        "duckdb_peak_mb": round(sampler.peak / 2**20),
        "db_file_mb": round(db_bytes / 2**20),
        "memory_limit": args.memory_limit,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(
        f"{report.lines_read:,} lines ({report.rows_rejected} rejected) -> {report.n_plays:,} plays, "
        f"{report.n_users:,} users, {report.n_artists:,} artists"
    )
    print(
        f"{seconds:.1f} s total (scan {scan_s:.1f} s on {threads} threads, then staging + DuckDB "
        f"{seconds - scan_s:.1f} s, of which plays {seconds_in['insert_plays']:.1f} s), "
        f"{result['rows_per_s']:,} rows/s"
    )
    print(
        f"scan phases: blocks {seconds_in['blocks']:.1f} s summed over threads, "
        f"in-order merge {seconds_in['merge']:.1f} s; load average {result['load_average_1m']}"
    )
    print(
        f"peak RSS {peak_rss_mb:.0f} MB, DuckDB peak {result['duckdb_peak_mb']} MB, db file {result['db_file_mb']} MB"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
