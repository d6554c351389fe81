"""Time publishing the raw tables of a Last.fm-format load, with and without reuse of unchanged snapshots.

    .venv/bin/python bench/publish.py --tsv /tmp/lastfm_synth.tsv [--work /tmp/publish_bench]

Loads the TSV (bench/make_lastfm_tsv.py writes the 17.6M-line one) into ``<work>/warehouse.duckdb``
unless that file already holds it, then, in a fresh home: times each table's content version, a first
publish (every table exported), a second publish of the same tables (every table reused: hard links),
and a third after one small table changed (only that table exported). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.catalog import Catalog, table_version  # noqa: E402
from recsys_assets.core import loaders  # noqa: E402

TABLES = ("users", "artists", "plays", "rejects", "load_log")


def _timed(call):
    started = time.perf_counter()
    out = call()
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=Path("/tmp/lastfm_synth.tsv"))
    parser.add_argument("--work", type=Path, default=Path("/tmp/publish_bench"))
    parser.add_argument("--memory-limit", default="4GB")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect(str(args.work / "warehouse.duckdb"))
    conn.execute(f"SET memory_limit = '{args.memory_limit}'")
    conn.execute(f"SET temp_directory = '{args.work / 'spill'}'")
    loaded = conn.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'plays'").fetchall()[0][0]
    if not loaded:
        _, load_s = _timed(lambda: loaders.load_lastfm360k(conn, args.tsv))
        print(f"loaded {args.tsv} in {load_s:.1f} s")
    versions = {}
    for table in TABLES:
        (_, rows), seconds = _timed(lambda t=table: table_version(conn, t))
        versions[table] = {"rows": rows, "version_s": round(seconds, 2)}
        print(f"{table:>9}: {rows:>12,} rows, content version in {seconds:.2f} s")
    home = args.work / "home"
    shutil.rmtree(home, ignore_errors=True)
    catalog = Catalog(home)
    first, export_s = _timed(lambda: catalog.publish(conn, TABLES, carry_over=False))
    second, reuse_s = _timed(lambda: catalog.publish(conn, TABLES, carry_over=False))
    conn.execute("INSERT INTO load_log SELECT * FROM load_log LIMIT 1")
    third, one_changed_s = _timed(lambda: catalog.publish(conn, TABLES, carry_over=False))
    reused = {
        g.name: sorted(t for t, e in catalog.manifest(g)["tables"].items() if e["reused"])
        for g in (first, second, third)
    }
    plays_mb = (first / "plays.parquet").stat().st_size / 2**20
    print(f"publish, every table exported:     {export_s:6.1f} s (plays.parquet {plays_mb:.0f} MB)")
    print(f"publish, nothing changed (reuse):  {reuse_s:6.1f} s  reused {reused[second.name]}")
    print(f"publish, load_log changed:         {one_changed_s:6.1f} s  reused {reused[third.name]}")
    conn.close()
    result = {
        "tables": versions,
        "export_all_s": round(export_s, 2),
        "reuse_all_s": round(reuse_s, 2),
        "one_changed_s": round(one_changed_s, 2),
        "plays_parquet_mb": round(plays_mb),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
