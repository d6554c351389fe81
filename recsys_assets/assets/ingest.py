"""Ingest: the observed input (file or synthetic settings) and the raw play triples in DuckDB."""

from pathlib import Path

import dagster as dg
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import markdown_table, reads_settings, table_version
from recsys_assets.pipeline.ingest import load_configured_source, loader_sql_hash, source_fingerprint
from recsys_assets.progress import Progress
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import DataSettings, RuntimeSettings, Settings, SyntheticSettings
from recsys_assets.storage import recording_version


def plays_source_asset(data: DataSettings, synthetic: SyntheticSettings) -> dg.AssetsDefinition:
    # multi_observable_source_asset, not observable_source_asset: Dagster 1.13 converts the latter through
    # the deprecated OpDefinition.version, a DeprecationWarning in every user's log.
    @dg.multi_observable_source_asset(
        specs=[
            dg.AssetSpec(
                "plays_source",
                group_name="ingest",
                description=f"The {data.source} input, observed by content fingerprint: a new dump "
                "(different content) makes everything downstream stale; touching the file does not.",
            )
        ]
    )
    def plays_source(store: RecsysStore):
        yield dg.ObserveResult(
            asset_key="plays_source",
            data_version=dg.DataVersion(source_fingerprint(data, synthetic, Path(store.home))),
        )

    return plays_source


@reads_settings("raw_plays-2")
def raw_plays_asset(
    data: DataSettings,
    synthetic: SyntheticSettings | None,
    loader_sql: str,
    runtime: RuntimeSettings,
    *,
    code_version: str,
) -> dg.AssetsDefinition:
    """``synthetic``: the generator settings for the synthetic source, else None; ``loader_sql``: the
    hash of the loaders' SQL (it assigns the ids and sums duplicates: editing it changes the tables)."""

    @dg.asset(
        deps=["plays_source"],
        group_name="ingest",
        kinds={"duckdb"},
        code_version=code_version,
        description="Play triples in DuckDB: users, artists (name, mbid), plays (duplicate pairs summed), "
        "rejects (file, line, reason, raw text) and a load log.",
    )
    def raw_plays(context: dg.AssetExecutionContext, warehouse: DuckDBResource) -> dg.MaterializeResult:
        with warehouse_connection(warehouse) as conn:
            # The loaders commit their own transaction: the ledger marks the load in progress around it.
            with recording_version(conn, "raw_plays") as done:
                with Progress("ingest", unit="B", log=context.log.info) as scanned:
                    report = load_configured_source(conn, data, synthetic, runtime.threads, progress=scanned)
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

    return raw_plays


def build_ingest_assets(settings: Settings) -> list:
    synthetic = settings.synthetic if settings.data.source == "synthetic" else None
    return [
        plays_source_asset(settings.data, settings.synthetic),
        raw_plays_asset(settings.data, synthetic, loader_sql_hash(), settings.runtime),
    ]
