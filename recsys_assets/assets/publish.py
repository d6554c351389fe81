"""Publishing: one consistent generation of every table, for the people and tools that read them."""

import time
from collections.abc import Sequence

import dagster as dg
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, markdown_table
from recsys_assets.catalog import VIEWS_SQL
from recsys_assets.dagster_internals import AssetCheckExecutionRecordStatus
from recsys_assets.pipeline.ingest import HETREC_TABLES, RAW_TABLES
from recsys_assets.pipeline.warehouse import FACTOR_TABLES
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import Settings
from recsys_assets.sql import read_sql

ANSWER_TABLES = ("related_artists", "recommendations", "artist_aliases", "evaluation")


def upstream(models: tuple[str, ...]) -> list[str]:
    """Every asset that writes a published table, for the enabled ``models``."""
    answers = ["related_artists", "recommendations", "artist_aliases", "evaluation_report"]
    return ["raw_plays", *(f"{m}_factors" for m in models), *answers]


class PublishBlockedError(RuntimeError):
    """An upstream asset check failed on its latest run: the previous generation stays published."""


def failed_checks(instance: dg.DagsterInstance, check_keys: Sequence[dg.AssetCheckKey]) -> list[str]:
    """The checks whose latest evaluation failed with ERROR severity (a check never evaluated, or one that
    only warns, e.g. a model below the popularity baseline, does not block)."""
    failed = []
    for key in check_keys:
        history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
        if history and history[0].status == AssetCheckExecutionRecordStatus.FAILED:
            evaluation = history[0].evaluation
            if evaluation is not None and evaluation.severity == dg.AssetCheckSeverity.WARN:
                continue
            failed.append(key.to_user_string())
    return failed


def build_publish_assets(settings: Settings, check_keys: Sequence[dg.AssetCheckKey]) -> list:
    tables = (
        RAW_TABLES
        + (HETREC_TABLES if settings.data.source == "hetrec" else ())
        + FACTOR_TABLES
        + ANSWER_TABLES
        # Only a tuned graph publishes its searches (rows of an earlier tuned run stay unpublished).
        + (("tuning",) if settings.tuning.mode != "off" else ())
    )

    @dg.asset(
        deps=upstream(settings.models.enabled),
        group_name="publish",
        kinds={"duckdb", "parquet"},
        # The views' SQL is written into recsys.duckdb by each publish: editing it republishes.
        code_version=code_version(
            "published_catalog-2", tables, settings.models.enabled, ("views", read_sql(VIEWS_SQL))
        ),
        description="Publishes every table as one generation of Parquet snapshots behind the read-only views of "
        "$RECSYS_HOME/recsys.duckdb, once everything upstream is done: readers never see tables of different "
        "runs side by side, and a failed asset or check leaves the previous generation in place. A table "
        "whose content did not change is hard-linked from the previous generation, not exported again.",
    )
    def published_catalog(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, store: RecsysStore
    ) -> dg.MaterializeResult:
        failed = failed_checks(context.instance, check_keys)
        if failed:
            raise PublishBlockedError(
                f"not publishing: check(s) failed on their latest run: {', '.join(failed)}; "
                "fix the cause (see the check's metadata) and refresh again"
            )
        started = time.perf_counter()
        with warehouse_connection(warehouse) as conn:
            # Exactly this graph's tables: nothing left over from another source (e.g. HetRec's tags).
            generation = store.catalog.publish(conn, tables, carry_over=False)
        seconds = time.perf_counter() - started
        entries = store.catalog.manifest(generation)["tables"]
        rows = [
            {
                "table": t,
                "rows": entries[t]["rows"],
                "snapshot": "reused" if entries[t]["reused"] else "exported",
            }
            for t in tables
        ]
        return dg.MaterializeResult(
            metadata={
                "generation": generation.name,
                "catalog": dg.MetadataValue.path(str(store.catalog.path)),
                "tables": markdown_table(rows),
                "tables_reused": sum(r["snapshot"] == "reused" for r in rows),
                "publish_seconds": round(seconds, 2),
            }
        )

    return [published_catalog]
