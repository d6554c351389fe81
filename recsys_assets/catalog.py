"""The published catalog: generations of Parquet snapshots, and the read-only connections readers use
(no Dagster import).

Layout under ``$RECSYS_HOME`` (every path the catalog records is relative to the home, so a home can
be moved or copied and serves its own data)::

    published/<n>/<table>.parquet   one snapshot per table, generation n = 00000001, 00000002, ...
    published/<n>/manifest.json     the generation's tables with their content versions and row counts
    published/current.json          {"generation": "<n>"}: the generation readers see
    recsys.duckdb                   views over the current generation, for any DuckDB client started
                                    in the home (``cd $RECSYS_HOME && duckdb -readonly recsys.duckdb``)

Besides one view per table, the catalog (``recsys.duckdb`` and every :meth:`Catalog.connect`
connection) has the views of ``sql/views/catalog.sql``: generic names (``items``, ``interactions``,
``related_items``, ``recommended_items``, ``item_aliases``) and the answers with keys and names joined
in (``related_artists_named``, ``recommendations_named``, ``artist_aliases_named``).

A publish writes a whole new generation, then swaps ``recsys.duckdb`` and ``current.json`` by rename:
readers see the old generation or the new one, every table from the same generation, never a mix and
never half a file. A table whose content version equals the current generation's is hard-linked from
it instead of being exported again.

Retention: a generation is deleted only when it is not among the :data:`KEEP_GENERATIONS` newest and was
replaced more than :data:`KEEP_MINUTES` minutes ago, so a reader holding a connection keeps working
across publishes. A publish that fails removes its own partial generation at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import duckdb

from recsys_assets.sql import read_sql
from recsys_assets.storage import ArtifactError, atomic_path, remove_orphan_temp_files

CATALOG_FILE = "recsys.duckdb"
PUBLISHED_DIR = "published"
MANIFEST_FILE = "manifest.json"
POINTER_FILE = "current.json"
# The catalog's derived views (generic names, answers with names): part of what a publish writes.
VIEWS_SQL = "views/catalog.sql"

# Retention of replaced generations (see the module docstring and the README).
KEEP_GENERATIONS = 3
KEEP_MINUTES = 60

# Set when a reader connects, before any view exists: no extension is ever fetched or loaded, no
# persistent secret is read or written, and spilling is off so a reader never writes a file.
_READER_CONFIG = {
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "allow_community_extensions": False,
    "allow_persistent_secrets": False,
    "temp_directory": "",
}

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class QueryRefusedError(ValueError):
    """SQL given to a read-only catalog query that is empty or is not a query."""


def read_only_statements(sql: str) -> int:
    """Check that ``sql`` holds one or more ``SELECT`` statements (``SHOW``, ``DESCRIBE``, ``SUMMARIZE``,
    ``VALUES`` and ``FROM``-first queries count as ``SELECT``); return how many.

    Raises :class:`QueryRefusedError` for empty SQL (or only comments) and for any other statement
    (``COPY``, ``ATTACH``, ``INSTALL``, ``SET``, ``CREATE``, ``PRAGMA``, ``EXPLAIN ANALYZE`` ...), and
    ``duckdb.ParserException`` for SQL that does not parse. The connection from
    :meth:`Catalog.connect` refuses file access outside the snapshots on its own; this check also
    refuses writes to the snapshots themselves.
    """
    statements = duckdb.extract_statements(sql)
    if not statements:
        raise QueryRefusedError("no SQL statement given (the text is empty or only comments)")
    for statement in statements:
        if statement.type != duckdb.StatementType.SELECT:
            kind = str(statement.type).rsplit(".", 1)[-1]
            kind = "INSTALL/LOAD" if kind == "LOAD" else kind  # DuckDB files INSTALL under LOAD
            raise QueryRefusedError(
                f"read-only catalog: only SELECT queries (also SHOW, DESCRIBE, SUMMARIZE) are allowed, "
                f"not {kind}"
            )
    return len(statements)


def create_derived_views(conn: duckdb.DuckDBPyConnection) -> list[str]:
    """Create the views of ``sql/views/catalog.sql`` (generic names, answers with keys and names) on a
    connection that has the published tables as views; a view whose tables or columns are missing (not
    published by this graph) is left out. Returns the names of the views created."""
    created = []
    for statement in duckdb.extract_statements(read_sql(VIEWS_SQL)):
        name = re.search(r"CREATE VIEW (\w+)", statement.query)
        try:
            conn.execute(statement.query)
        except (duckdb.CatalogException, duckdb.BinderException):
            continue  # a table it reads is not published (or not with these columns)
        if name is not None:
            created.append(name.group(1))
    return created


_MUSIC_WORDS = {
    "item": "artist",
    "items": "artists",
    "value": "plays",
    "user": "listener",
    "users": "listeners",
}
_GENERIC_WORDS = {"item": "item", "items": "items", "value": "value", "user": "user", "users": "users"}


def vocabulary(conn: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The words for what the published data holds: ``item``/``items``/``value``/``user``/``users`` for
    the generic ``triples`` source (ratings of movies, products, ...), ``artist``/``artists``/``plays``/
    ``listener``/``listeners`` for the music sources (and when no load is published), from the latest ``load_log``
    row. For the CLI and reports to speak of items where the source is generic."""
    try:
        row = conn.execute("SELECT source FROM load_log ORDER BY loaded_at DESC LIMIT 1").fetchone()
    except duckdb.CatalogException:
        row = None
    return dict(_GENERIC_WORDS if row is not None and row[0] == "triples" else _MUSIC_WORDS)


def table_version(conn: duckdb.DuckDBPyConnection, table: str) -> tuple[str, int]:
    """Content version of a warehouse table and its row count.

    The version hashes the column names and types, the row count and the sum of DuckDB's row hashes
    (``hash(t)``), so it does not depend on row order; equal versions mean the snapshot can be reused.
    """
    schema = [row[:2] for row in conn.execute(f"DESCRIBE {table}").fetchall()]
    # fetchall, not fetchone: DuckDB 2 keeps a partly fetched result open and refuses register() after.
    ((count, total),) = conn.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {table} AS t"
    ).fetchall()
    digest = hashlib.blake2b(json.dumps([schema, int(count), str(total)]).encode(), digest_size=16)
    return digest.hexdigest(), int(count)


class Catalog:
    """The published side of a ``$RECSYS_HOME`` (see the module docstring for layout and rules).

    ``keep_generations`` / ``keep_minutes``: the retention rule, defaults :data:`KEEP_GENERATIONS` and
    :data:`KEEP_MINUTES`.
    """

    def __init__(
        self, home: str | Path, keep_generations: int = KEEP_GENERATIONS, keep_minutes: float = KEEP_MINUTES
    ):
        if keep_generations < 1:
            raise ValueError(f"keep_generations must be at least 1, got {keep_generations}")
        self.home = Path(home)
        self.published = self.home / PUBLISHED_DIR
        self.path = self.home / CATALOG_FILE
        self.keep_generations = keep_generations
        self.keep_minutes = keep_minutes
        self._pointer = self.published / POINTER_FILE

    # -- reading ---------------------------------------------------------------------------------

    def current_generation(self) -> Path | None:
        """Folder of the generation readers see, or None before the first publish."""
        if not self._pointer.is_file():
            return None
        return self.published / json.loads(self._pointer.read_text())["generation"]

    def snapshot_path(self, table: str) -> Path | None:
        """The current snapshot of ``table``, or None if it was never published."""
        generation = self.current_generation()
        path = generation / f"{table}.parquet" if generation else None
        return path if path is not None and path.is_file() else None

    def tables(self) -> list[str]:
        """Names of the published tables, sorted."""
        generation = self.current_generation()
        return sorted(p.stem for p in generation.glob("*.parquet")) if generation else []

    def manifest(self, generation: Path | None = None) -> dict[str, Any]:
        """The manifest of ``generation`` (default: the current one); ``{}`` when there is none
        (before the first publish, or a generation written before manifests existed)."""
        generation = generation if generation is not None else self.current_generation()
        path = generation / MANIFEST_FILE if generation is not None else None
        return json.loads(path.read_text()) if path is not None and path.is_file() else {}

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A connection to the current generation that can read its snapshots and no other file.

        An in-memory database with one view per snapshot (absolute paths resolved from this home, so
        the working directory does not matter); then DuckDB itself refuses every other file
        (``enable_external_access = false`` with ``allowed_paths`` = exactly these snapshots: no reads
        elsewhere, no ``COPY ... TO`` a new file, no ``ATTACH``, no extension install or load, no spill
        files) and the configuration is locked so a query cannot undo it. A ``COPY ... TO`` one of the
        snapshots themselves is not refused by DuckDB: check SQL from users with
        :func:`read_only_statements` first, as ``recsys query`` does.

        The connection keeps reading its generation after later publishes (see the retention rule);
        connect again to see a newer one.
        """
        generation = self.current_generation()
        if generation is None:
            raise ArtifactError(
                f"no published outputs under {self.home}: run `recsys refresh` (or materialize in the UI) first"
            )
        generation = generation.resolve()
        snapshots = sorted(generation.glob("*.parquet"))
        if not snapshots:
            raise ArtifactError(
                f"published generation {generation} has no snapshots: run `recsys refresh` to publish again"
            )
        conn = duckdb.connect(":memory:", config=_READER_CONFIG)
        try:
            for snapshot in snapshots:
                conn.execute(f"CREATE VIEW {snapshot.stem} AS SELECT * FROM read_parquet({_quote(snapshot)})")
            create_derived_views(conn)
            conn.execute("SET allowed_paths = ?", [[str(s) for s in snapshots]])
            conn.execute("SET enable_external_access = false")
            conn.execute("SET lock_configuration = true")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- publishing ------------------------------------------------------------------------------

    def publish(
        self, conn: duckdb.DuckDBPyConnection, tables: Iterable[str], carry_over: bool = True
    ) -> Path:
        """Publish warehouse ``tables`` (read through ``conn``) as a new generation; return its folder.

        A table whose content version (:func:`table_version`) equals the one recorded in the current
        generation's manifest is hard-linked from it; the others are exported to Parquet. With
        ``carry_over`` the current generation's other tables stay published (hard-linked); without it
        the new generation holds exactly ``tables``. On any failure the partial generation is removed
        and the current one stays current. Orphan temporary files of killed runs (under the home) and
        unfinished generations are removed first; old generations are pruned by the retention rule.
        """
        tables = list(dict.fromkeys(tables))
        for table in tables:
            if not _TABLE_NAME.fullmatch(table):
                raise ValueError(f"cannot publish {table!r}: a table name is letters, digits and '_'")
        self.published.mkdir(parents=True, exist_ok=True)
        remove_orphan_temp_files(self.home)
        current = self.current_generation()
        self._remove_unfinished(current)
        previous = self.manifest(current).get("tables", {}) if current is not None else {}
        generation = self.published / f"{self._last_number() + 1:08d}"
        generation.mkdir()
        swapped = False
        try:
            entries: dict[str, dict[str, Any]] = {}
            for table in tables:
                version, rows = table_version(conn, table)
                target = generation / f"{table}.parquet"
                old = previous.get(table, {})
                reused = current is not None and old.get("version") == version
                if reused and (current / target.name).is_file():
                    os.link(current / target.name, target)  # same content: same file, no export
                else:
                    reused = False
                    conn.execute(f"COPY (SELECT * FROM {table}) TO {_quote(target)} (FORMAT parquet)")
                entries[table] = {"version": version, "rows": rows, "reused": reused}
            if current is not None and carry_over:
                for old_file in sorted(current.glob("*.parquet")):
                    if old_file.stem not in entries:
                        os.link(old_file, generation / old_file.name)
                        entries[old_file.stem] = previous.get(old_file.stem, {}) | {"reused": True}
            manifest = {"generation": generation.name, "published_at": time.time(), "tables": entries}
            with atomic_path(generation / MANIFEST_FILE) as tmp:
                tmp.write_text(json.dumps(manifest, indent=1, sort_keys=True))
            # The commit point: once the catalog file names the generation it is never removed here.
            self._write_catalog(generation)
            swapped = True
            with atomic_path(self._pointer) as tmp:
                tmp.write_text(json.dumps({"generation": generation.name}))
        except BaseException:
            if not swapped:
                shutil.rmtree(generation, ignore_errors=True)
            raise
        self._prune(generation)
        return generation

    def _last_number(self) -> int:
        return max((int(p.name) for p in self.published.iterdir() if p.name.isdigit()), default=0)

    def _generations(self) -> list[Path]:
        """Generation folders, oldest first."""
        return sorted(
            (p for p in self.published.iterdir() if p.name.isdigit() and p.is_dir()),
            key=lambda p: int(p.name),
        )

    def _remove_unfinished(self, current: Path | None) -> None:
        """Remove generation folders newer than ``current`` that never got a manifest (a killed publish)."""
        floor = int(current.name) if current is not None else 0
        for folder in self._generations():
            if int(folder.name) > floor and not (folder / MANIFEST_FILE).is_file():
                shutil.rmtree(folder, ignore_errors=True)

    def _write_catalog(self, generation: Path) -> None:
        """Write the catalog database (one view per snapshot of ``generation``) and rename it into place.

        The views name their snapshots relative to the home (``published/<n>/<table>.parquet``), so a
        DuckDB client started in the home resolves them wherever the home has been moved or copied.
        """
        with atomic_path(self.path) as tmp:
            tmp.unlink()  # DuckDB refuses to open an empty file that is not a database
            # A view is bound when created: let the relative paths resolve against the home here.
            writer = duckdb.connect(str(tmp), config={"file_search_path": str(self.home.resolve())})
            try:
                for snapshot in sorted(generation.glob("*.parquet")):
                    relative = Path(PUBLISHED_DIR) / generation.name / snapshot.name
                    writer.execute(
                        f"CREATE VIEW {snapshot.stem} AS SELECT * FROM read_parquet({_quote(relative)})"
                    )
                create_derived_views(writer)
            finally:
                writer.close()

    def _prune(self, current: Path) -> None:
        """Delete generations that are neither among the newest ``keep_generations`` nor replaced less
        than ``keep_minutes`` ago (replaced = when the next generation was published)."""
        generations = [g for g in self._generations() if int(g.name) <= int(current.name)]
        now = time.time()
        for older, newer in zip(generations, generations[1:], strict=False):
            if older in generations[-self.keep_generations :]:
                continue
            replaced_at = self.manifest(newer).get("published_at", newer.stat().st_mtime)
            if now - replaced_at >= self.keep_minutes * 60:
                shutil.rmtree(older, ignore_errors=True)


def _quote(path: Path) -> str:
    """``path`` as a SQL string literal."""
    return "'" + str(path).replace("'", "''") + "'"
