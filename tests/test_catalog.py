"""The published catalog: generations, reuse of unchanged snapshots, retention, relocation, failed
publishes, permissions, and `recsys query` as a read-only reader."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from recsys_assets.catalog import (
    CATALOG_FILE,
    Catalog,
    QueryRefusedError,
    read_only_statements,
    table_version,
)
from recsys_assets.cli import main


@pytest.fixture
def warehouse(tmp_path):
    conn = duckdb.connect(str(tmp_path / "w.duckdb"))
    conn.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
    conn.execute("CREATE TABLE u AS SELECT 'a' AS y")
    yield conn
    conn.close()


def _count(conn, table: str = "t") -> int:
    return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_publish_swaps_whole_generations(tmp_path, warehouse):
    catalog = Catalog(tmp_path / "home")
    first = catalog.publish(warehouse, ["t", "u"])
    reader = catalog.connect()
    assert _count(reader) == 5
    warehouse.execute("CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range(7)")
    second = catalog.publish(warehouse, ["t"])  # while a reader holds the old generation open
    assert _count(reader) == 5  # the open reader still sees its own generation, whole
    with catalog.connect() as fresh:  # a new one sees the new generation, even in the same process
        assert _count(fresh) == 7
        assert fresh.execute("SELECT y FROM u").fetchall() == [("a",)]  # carried over, not re-exported
    assert os.path.samefile(first / "u.parquet", second / "u.parquet")
    # A reader cannot change what others see: its views live in its own in-memory database.
    reader.execute("DROP VIEW t")
    reader.close()
    with catalog.connect() as fresh:
        assert _count(fresh) == 7
    assert catalog.tables() == ["t", "u"] and catalog.current_generation() == second
    catalog.publish(warehouse, ["t"], carry_over=False)
    assert catalog.tables() == ["t"]


def test_a_reader_keeps_working_across_several_publishes(tmp_path, warehouse, monkeypatch):
    """A notebook or `duckdb` session holding one connection: the generation it reads is retained (the
    old code deleted it at the second publish: "No files found that match the pattern")."""
    catalog = Catalog(tmp_path / "home")
    catalog.publish(warehouse, ["t", "u"])
    held = catalog.connect()
    monkeypatch.chdir(catalog.home)  # as `cd $RECSYS_HOME && duckdb -readonly recsys.duckdb`
    file_reader = duckdb.connect(CATALOG_FILE, read_only=True)
    for n in (6, 7, 8, 9):
        warehouse.execute(f"CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range({n})")
        catalog.publish(warehouse, ["t"])
        assert _count(held) == 5 and _count(file_reader) == 5
        assert held.execute("SELECT y FROM u").fetchall() == [("a",)]
    with catalog.connect() as fresh:
        assert _count(fresh) == 9
    held.close()
    file_reader.close()


def test_retention_keeps_the_newest_generations_and_the_recently_replaced(tmp_path, warehouse):
    home = tmp_path / "home"
    for n in range(4):
        warehouse.execute(f"CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range({n + 1})")
        Catalog(home, keep_generations=2, keep_minutes=60).publish(warehouse, ["t"])
    # Every generation was replaced less than 60 minutes ago: all are kept.
    assert sorted(p.name for p in (home / "published").iterdir() if p.is_dir()) == [
        f"{i:08d}" for i in range(1, 5)
    ]
    catalog = Catalog(home, keep_generations=2, keep_minutes=0)
    last = catalog.publish(warehouse, ["t"])
    assert sorted(p.name for p in (home / "published").iterdir() if p.is_dir()) == ["00000004", last.name]
    with catalog.connect() as conn:
        assert _count(conn) == 4


def test_unchanged_tables_are_hard_linked_and_changed_ones_exported(tmp_path, warehouse):
    catalog = Catalog(tmp_path / "home")
    first = catalog.publish(warehouse, ["t", "u"], carry_over=False)
    warehouse.execute("CREATE OR REPLACE TABLE u AS SELECT 'b' AS y")
    # Same rows in another order: the same content version, so the same snapshot.
    warehouse.execute("CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range(5) ORDER BY x DESC")
    second = catalog.publish(warehouse, ["t", "u"], carry_over=False)
    assert os.stat(first / "t.parquet").st_ino == os.stat(second / "t.parquet").st_ino
    assert os.stat(first / "u.parquet").st_ino != os.stat(second / "u.parquet").st_ino
    manifest = catalog.manifest()
    assert manifest["tables"]["t"]["reused"] and not manifest["tables"]["u"]["reused"]
    assert manifest["tables"]["t"]["rows"] == 5
    with catalog.connect() as conn:
        assert conn.execute("SELECT y FROM u").fetchall() == [("b",)] and _count(conn) == 5


def test_table_version_sees_values_and_schema_not_order(warehouse):
    base, rows = table_version(warehouse, "t")
    assert rows == 5
    warehouse.execute("CREATE TABLE t2 AS SELECT * FROM t ORDER BY x DESC")
    assert table_version(warehouse, "t2")[0] == base
    warehouse.execute("CREATE TABLE t3 AS SELECT x AS z FROM t")  # same values, another column name
    warehouse.execute("CREATE TABLE t4 AS SELECT x::INTEGER AS x FROM t")  # same values, another type
    warehouse.execute("CREATE TABLE t5 AS SELECT CASE WHEN x = 4 THEN 40 ELSE x END AS x FROM t")
    assert len({base} | {table_version(warehouse, t)[0] for t in ("t3", "t4", "t5")}) == 4


class _DiskFullOnCopy:
    """A warehouse connection whose export of ``table`` fails as a full disk would, mid-file."""

    def __init__(self, conn: duckdb.DuckDBPyConnection, table: str):
        self.conn, self.table = conn, table

    def execute(self, sql: str, *args):
        if sql.startswith(f"COPY (SELECT * FROM {self.table})"):
            target = Path(sql.split(" TO '")[1].split("'")[0])
            target.write_bytes(b"PAR1 half a file")
            raise duckdb.IOException(f'Could not write file "{target}": No space left on device')
        return self.conn.execute(sql, *args)


def test_a_failed_publish_removes_its_generation_and_keeps_the_previous_one(tmp_path, warehouse):
    catalog = Catalog(tmp_path / "home")
    first = catalog.publish(warehouse, ["t", "u"])
    warehouse.execute("CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range(9)")
    warehouse.execute("CREATE OR REPLACE TABLE u AS SELECT 'b' AS y")
    with pytest.raises(duckdb.IOException, match="No space left"):
        catalog.publish(_DiskFullOnCopy(warehouse, "u"), ["t", "u"])
    assert sorted(p.name for p in catalog.published.iterdir()) == [first.name, "current.json"]
    assert catalog.current_generation() == first
    with catalog.connect() as conn:
        assert _count(conn) == 5
    second = catalog.publish(warehouse, ["t", "u"])  # space freed: the retry just works
    with catalog.connect() as conn:
        assert _count(conn) == 9 and conn.execute("SELECT y FROM u").fetchall() == [("b",)]
    assert second.name == "00000002"


def test_leftovers_of_a_killed_run_are_removed_at_the_next_publish(tmp_path, warehouse):
    catalog = Catalog(tmp_path / "home")
    first = catalog.publish(warehouse, ["t"])
    unfinished = catalog.published / "00000002"  # killed mid-export: no manifest
    unfinished.mkdir()
    (unfinished / "t.parquet").write_bytes(b"PAR1 half")
    orphans = [
        catalog.home / "artifacts" / ".als_factors.npz.x1y2z3w4v5u6.tmp",
        catalog.home / ".recsys.duckdb.a1b2c3d4e5f6.tmp",
    ]
    for path in orphans:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    second = catalog.publish(warehouse, ["t"])
    assert not unfinished.exists() or (unfinished / "manifest.json").is_file()
    assert not any(p.exists() for p in orphans)
    assert first.exists() and second.exists() and catalog.current_generation() == second


def test_a_copied_home_serves_its_own_data(tmp_path, warehouse, monkeypatch):
    """Paths are relative to the home: a copy keeps working after the original is deleted (the old
    catalog named the original's files by absolute path)."""
    original = tmp_path / "home"
    Catalog(original).publish(warehouse, ["t", "u"])
    copy = tmp_path / "moved" / "home"
    shutil.copytree(original, copy)
    shutil.rmtree(original)
    with Catalog(copy).connect() as conn:
        assert _count(conn) == 5
    # Any DuckDB client started in the home reads the catalog file's views.
    monkeypatch.chdir(copy)
    with duckdb.connect("recsys.duckdb", read_only=True) as conn:
        assert _count(conn) == 5 and conn.execute("SELECT y FROM u").fetchall() == [("a",)]
    assert json.loads((copy / "published" / "current.json").read_text()) == {"generation": "00000001"}


def test_published_files_are_readable_by_other_users(tmp_path, warehouse):
    saved = os.umask(0o022)
    try:
        catalog = Catalog(tmp_path / "home")
        catalog.publish(warehouse, ["t", "u"])
        catalog.publish(warehouse, ["t", "u"])
    finally:
        os.umask(saved)
    modes = {str(p.relative_to(catalog.home)): oct(p.stat().st_mode & 0o777) for p in catalog.home.rglob("*")}
    assert modes and all(
        mode == oct(0o755) if (catalog.home / path).is_dir() else mode == oct(0o644)
        for path, mode in modes.items()
    ), modes


def test_read_only_statements():
    assert read_only_statements("SELECT 1; FROM t; SHOW TABLES; DESCRIBE t; SUMMARIZE t; VALUES (1)") == 6
    for sql in ("", "   ", "-- only a comment", "/* nothing */"):
        with pytest.raises(QueryRefusedError, match="no SQL statement"):
            read_only_statements(sql)
    for sql, kind in [
        ("COPY t TO 'x.parquet'", "COPY"),
        ("SELECT 1; COPY t TO 'x.parquet'", "COPY"),
        ("ATTACH 'w.duckdb'", "ATTACH"),
        ("INSTALL httpfs", "INSTALL/LOAD"),
        ("SET enable_external_access = true", "SET"),
        ("EXPLAIN ANALYZE COPY t TO 'x.parquet'", "EXPLAIN"),
        ("CREATE TABLE x (a INT)", "CREATE"),
        ("PRAGMA enable_profiling", "PRAGMA"),
    ]:
        with pytest.raises(QueryRefusedError, match=f"only SELECT.*not {kind}"):
            read_only_statements(sql)


def test_the_reader_connection_refuses_every_other_file(tmp_path, warehouse):
    """Even without the statement check, DuckDB refuses files outside the current snapshots, new files,
    ATTACH, extension installs and loads, and undoing its settings."""
    catalog = Catalog(tmp_path / "home")
    generation = catalog.publish(warehouse, ["t"]).resolve()
    warehouse.close()  # as in a reader's own process, where nothing else holds the warehouse open
    warehouse_file = tmp_path / "w.duckdb"
    with catalog.connect() as conn:
        for sql in [
            "SELECT * FROM read_text('/etc/hostname')",
            f"SELECT * FROM read_csv('{warehouse_file}')",
            f"SELECT * FROM read_text('{generation}/../current.json')",
            f"SELECT * FROM glob('{generation}/*')",
            f"ATTACH '{warehouse_file}' AS w (READ_ONLY)",
            f"COPY (SELECT 1) TO '{generation}/new.parquet'",
            f"COPY (SELECT 1 AS x) TO '{generation}/t.parquet' (FORMAT parquet)",
            "INSTALL httpfs",
            "LOAD httpfs",
        ]:
            with pytest.raises(duckdb.PermissionException):
                conn.execute(sql)
        for setting in (
            "enable_external_access = true",
            "allowed_directories = ['/']",
            "lock_configuration = false",
        ):
            with pytest.raises(duckdb.InvalidInputException, match="locked"):
                conn.execute(f"SET {setting}")
        assert _count(conn) == 5
    assert sorted(p.name for p in generation.iterdir()) == ["manifest.json", "t.parquet"]


@pytest.fixture
def published_home(tmp_path, warehouse, monkeypatch):
    """A home with t and u published; RECSYS_HOME points at it."""
    home = tmp_path / "home"
    Catalog(home).publish(warehouse, ["t", "u"])
    monkeypatch.setenv("RECSYS_HOME", str(home))
    return home


def test_recsys_query_refuses_writes_foreign_files_attach_and_extensions(published_home, tmp_path, capsys):
    generation = Catalog(published_home).current_generation().resolve()
    snapshot = generation / "t.parquet"
    before = snapshot.read_bytes()
    attacks = {
        f"COPY (SELECT 1 AS x) TO '{snapshot}' (FORMAT parquet, USE_TMP_FILE false)": "not COPY",
        f"SELECT 1; COPY (SELECT 1 AS x) TO '{snapshot}'": "not COPY",
        "SELECT * FROM read_text('/etc/hostname')": "Permission Error",
        f"SELECT * FROM read_csv('{tmp_path / 'w.duckdb'}')": "Permission Error",
        f"ATTACH '{tmp_path / 'w.duckdb'}' AS w": "not ATTACH",
        "SELECT * FROM query('ATTACH ''w.duckdb''')": "SELECT",
        "INSTALL httpfs": "not INSTALL/LOAD",
        "SET enable_external_access = true": "not SET",
        "": "no SQL statement",
        "-- just a comment": "no SQL statement",
    }
    for sql, expected in attacks.items():
        assert main(["query", sql]) == 1, sql
        captured = capsys.readouterr()
        assert captured.out == "" and expected in captured.err, (sql, captured.err)
        assert len(captured.err.strip().splitlines()) == 1 and "Traceback" not in captured.err, captured.err
    assert snapshot.read_bytes() == before
    assert sorted(p.name for p in generation.iterdir()) == ["manifest.json", "t.parquet", "u.parquet"]
    assert main(["query", "SELECT count(*) AS n FROM t"]) == 0
    assert capsys.readouterr().out.split() == ["n", "5"]


@pytest.mark.slow
def test_editing_the_catalog_views_republishes_and_nothing_else(materialized, tmp_path, monkeypatch):
    """sql/views/catalog.sql is written into recsys.duckdb by each publish: an edit of it makes
    published_catalog (and only it) unsynced, so the next refresh publishes the new views."""
    from recsys_assets import sql
    from recsys_assets.catalog import VIEWS_SQL
    from recsys_assets.definitions import build_definitions
    from recsys_assets.refresh import status

    settings, home, defs, instance, _ = materialized
    assert status(defs, instance).waves == []
    copy = tmp_path / "sql"
    shutil.copytree(sql.SQL_DIR, copy)
    views = copy / VIEWS_SQL
    views.write_text(views.read_text() + "\nCREATE VIEW item_count AS SELECT count(*) AS n FROM artists;\n")
    monkeypatch.setattr(sql, "SQL_DIR", copy)
    edited = build_definitions(settings, home)
    graph, edited_graph = defs.resolve_asset_graph(), edited.resolve_asset_graph()
    changed = {
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if graph.get(key).code_version != edited_graph.get(key).code_version
    }
    assert changed == {"published_catalog"}
    assert [set(wave) for wave in status(edited, instance).waves] == [{"published_catalog"}]
