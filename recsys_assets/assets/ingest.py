"""Ingest: the observed input (file or synthetic settings) and the raw play triples in DuckDB."""

import dataclasses
from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, markdown_table, table_version
from recsys_assets.core import loaders
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import Settings, fingerprint
from recsys_assets.sql import SQL_DIR
from recsys_assets.storage import content_hash, recording_version

RAW_TABLES = ("users", "artists", "plays", "rejects", "load_log")
HETREC_TABLES = ("tags", "artist_tags")


def loader_sql_hash() -> str:
    """Hash of the SQL files the loaders run (everything in ``sql/`` but the example queries)."""
    return content_hash(*[(p.name, p.read_text()) for p in sorted(SQL_DIR.glob("*.sql"))])


def source_fingerprint(settings: Settings, home: Path) -> str:
    """Content fingerprint of the configured input: the file's (or folder's) content hash, or for the
    synthetic source the generator settings. A stat cache under ``home`` makes an unchanged file cost
    a ``stat``, and a ``touch`` a re-hash that yields the same fingerprint."""
    data = settings.data
    if data.source == "synthetic":
        return "synthetic-" + fingerprint(settings.synthetic)
    path = Path(data.path)
    if not path.exists():
        raise loaders.LoadError(
            f"{path}: the {data.source} input does not exist; fix [data] path in the settings file"
        )
    found = loaders.file_fingerprint(path, cache=home / "fingerprints.json", source=data.source)
    if data.source == "triples" and data.items_path:  # the item names are input too
        names = loaders.file_fingerprint(data.items_path, cache=home / "fingerprints.json", source="items")
        found = content_hash(found, names)
    return found


def load_configured_source(conn, settings: Settings, progress=None) -> loaders.LoadReport:
    """Load the source named in ``[data]`` into the warehouse tables (replacing them atomically);
    ``progress`` (a :class:`recsys_assets.progress.Progress`) follows the scan of a text file."""
    data = settings.data
    threads = settings.runtime.threads  # text files are scanned in parallel blocks
    limit, min_value = data.max_reject_fraction, data.min_value
    if data.source == "synthetic":
        plays = generate_plays(**dataclasses.asdict(settings.synthetic))
        return loaders.load_synthetic(conn, plays, min_value=min_value)
    scan = {"max_reject_fraction": limit, "threads": threads, "min_value": min_value, "progress": progress}
    if data.source == "lastfm360k":
        return loaders.load_lastfm360k(conn, data.path, **scan)
    if data.source == "hetrec":
        return loaders.load_hetrec(conn, data.path, **scan)
    return loaders.load_triples(
        conn,
        data.path,
        user_column=data.user_column,
        item_column=data.item_column,
        value_column=data.value_column,
        header=data.header,
        delimiter=data.delimiter,
        item_name_column=data.item_name_column,
        items_path=data.items_path or None,
        **scan,
    )


def build_ingest_assets(settings: Settings) -> list:
    source_settings = settings.synthetic if settings.data.source == "synthetic" else None

    @dg.observable_source_asset(
        group_name="ingest",
        description=f"The {settings.data.source} input, observed by content fingerprint: a new dump "
        "(different content) makes everything downstream stale; touching the file does not.",
    )
    def plays_source(store: RecsysStore) -> dg.DataVersion:
        return dg.DataVersion(source_fingerprint(settings, Path(store.home)))

    @dg.asset(
        deps=[plays_source],
        group_name="ingest",
        kinds={"duckdb"},
        # The loaders' SQL assigns the ids and sums duplicates: editing it changes the tables too.
        code_version=code_version("raw_plays-1", settings.data, source_settings, loader_sql_hash()),
        description="Play triples in DuckDB: users, artists (name, mbid), plays (duplicate pairs summed), "
        "rejects (file, line, reason, raw text) and a load log.",
    )
    def raw_plays(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse_connection(warehouse) as conn:
            # The loaders commit their own transaction: the ledger marks the load in progress around it.
            with recording_version(conn, "raw_plays") as done:
                report = load_configured_source(conn, settings)
                version = table_version(conn, "plays")
                done(version.value)
            reasons = conn.execute(
                "SELECT reason, count(*) AS lines FROM rejects GROUP BY reason ORDER BY lines DESC LIMIT 20"
            ).fetchall()
        context.log.info(
            f"loaded {report.rows_loaded:,} of {report.lines_read:,} lines "
            f"({report.rows_rejected:,} rejected, {report.duplicates_merged:,} duplicate pairs merged)"
        )
        return dg.MaterializeResult(
            data_version=version,
            metadata={
                "dagster/row_count": report.n_plays,
                "lines_read": report.lines_read,
                "rows_loaded": report.rows_loaded,
                "rows_rejected": report.rows_rejected,
                "duplicates_merged": report.duplicates_merged,
                "users": report.n_users,
                "artists": report.n_artists,
                "source_file": str(report.source_file),
                "reject_reasons": markdown_table([{"reason": r, "lines": n} for r, n in reasons]),
            },
        )

    return [plays_source, raw_plays]
