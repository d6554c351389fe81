"""What the UI shows of a warehouse table: its row count, its columns (types read from DuckDB, a
description for each) and where its columns come from."""

from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg

# Every column of every table an asset writes, described for the asset's "Columns" view. A column the
# warehouse has and this map lacks fails the schema test (tests/test_ui_metadata.py).
COLUMN_DOCS: dict[str, dict[str, str]] = {
    "users": {
        "user_id": "Dense id 0..n-1 (row of the play matrix), ordered by key.",
        "user_key": "The user's id in the source file.",
    },
    "artists": {
        "artist_id": "Dense id 0..m-1 (column of the play matrix), ordered by key.",
        "artist_key": "The artist's id in the source file (the name as written for Last.fm-360K).",
        "name": "Display name.",
        "mbid": "MusicBrainz id where the source has one.",
    },
    "plays": {
        "user_id": "users.user_id.",
        "artist_id": "artists.artist_id.",
        "plays": "Play count (value column); duplicate (user, artist) lines of the source summed.",
    },
    "rejects": {
        "source_file": "File the line came from.",
        "line_number": "1-based line number in that file.",
        "reason": "Why the line was not loaded.",
        "raw_line": "The line as read.",
    },
    "tags": {
        "tag_id": "Dense tag id (HetRec only).",
        "tag": "Tag text.",
    },
    "artist_tags": {
        "user_id": "users.user_id of the tagger.",
        "artist_id": "artists.artist_id tagged.",
        "tag_id": "tags.tag_id.",
    },
    "load_log": {
        "loaded_at": "When the load finished (UTC).",
        "source": "[data] source.",
        "source_file": "File or folder loaded.",
        "lines_read": "Data lines read.",
        "rows_loaded": "Lines loaded.",
        "rows_rejected": "Lines rejected (see rejects).",
        "duplicates_merged": "Duplicate (user, artist) pairs summed.",
        "n_users": "Users after the load.",
        "n_artists": "Artists after the load.",
        "n_plays": "Rows of plays after the load.",
    },
    "artist_factors": {
        "model": "Model that produced the factors.",
        "settings_fingerprint": "Fingerprint of the settings that shaped the factors.",
        "artist_id": "artists.artist_id.",
        "factors": "The artist's latent vector.",
    },
    "user_factors": {
        "model": "Model that produced the factors.",
        "settings_fingerprint": "Fingerprint of the settings that shaped the factors.",
        "user_id": "users.user_id.",
        "factors": "The user's latent vector.",
    },
    "related_artists": {
        "model": "Model whose artist factors ranked the list.",
        "artist_id": "The query artist (artists.artist_id).",
        "rank": "1 = closest.",
        "related_id": "The related artist (artists.artist_id).",
        "score": "Cosine similarity of the two artists' factors.",
    },
    "recommendations": {
        "model": "Model whose factors scored the artists.",
        "user_id": "users.user_id.",
        "rank": "1 = best.",
        "artist_id": "Recommended artist (artists.artist_id), never one the user played.",
        "score": "Inner product of the user and artist factors.",
    },
    "artist_aliases": {
        "model": "Model whose factors found the pair.",
        "artist_id": "One artist of the candidate pair (artists.artist_id).",
        "alias_id": "The other artist (artists.artist_id).",
        "factor_similarity": "Cosine similarity of the two artists' factors.",
        "listener_similarity": "Cosine similarity of the two artists' listener sets.",
        "shared_listeners": "Users who played both.",
        "artist_listeners": "Users who played artist_id.",
        "alias_listeners": "Users who played alias_id.",
        "expected_shared": "Shared listeners expected of artists this similar.",
        "score": "-log P(Poisson(expected_shared) <= shared_listeners): higher = more likely one artist.",
    },
    "evaluation": {
        "run_at": "When the evaluation ran (UTC).",
        "model": "Model or baseline (popularity, random: exact expectations).",
        "settings_fingerprint": "Fingerprint of every setting that shaped the number.",
        "split": "Split scheme and held-out fraction ('all': measured on the full data).",
        "split_seed": "[evaluation] seed of the split (NULL where the number uses no split).",
        "metric": "precision, recall, map, ndcg, auc (full AUC over all non-train artists), mpr "
        "(weighted by the held-out value), mpr_unweighted, coverage, rmse, mae, related_tag_similarity.",
        "k": "Cut-off of top-k metrics; NULL for metrics over the whole ranking.",
        "value": "The metric's value.",
    },
}


def column_schema(conn: Any, table: str) -> dg.TableSchema:
    """The table's columns with their DuckDB types and the descriptions of :data:`COLUMN_DOCS`."""
    docs = COLUMN_DOCS[table]
    columns = conn.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = current_schema() ORDER BY ordinal_position",
        [table],
    ).fetchall()
    return dg.TableSchema(
        columns=[dg.TableColumn(name, str(kind), description=docs.get(name)) for name, kind in columns]
    )


def row_count(conn: Any, table: str, where: str = "", params: Sequence[Any] = ()) -> int:
    clause = f" WHERE {where}" if where else ""
    return int(conn.execute(f"SELECT count(*) FROM {table}{clause}", list(params)).fetchone()[0])


def table_metadata(
    conn: Any,
    table: str,
    where: str = "",
    params: Sequence[Any] = (),
    lineage: Mapping[str, Sequence[tuple[str, str]]] | None = None,
) -> dict[str, Any]:
    """``dagster/row_count`` (rows matching ``where``), ``dagster/column_schema`` and, given
    ``lineage`` (column -> ``[(asset, column), ...]``), ``dagster/column_lineage``."""
    metadata: dict[str, Any] = {
        "dagster/row_count": row_count(conn, table, where, params),
        "dagster/column_schema": column_schema(conn, table),
        "table": table,
    }
    if lineage:
        metadata["dagster/column_lineage"] = dg.TableColumnLineage(
            deps_by_column={
                column: [dg.TableColumnDep(asset_key=dg.AssetKey(a), column_name=c) for a, c in deps]
                for column, deps in lineage.items()
            }
        )
    return metadata


def other_tables(
    conn: Any, tables: Sequence[str], where: str = "", params: Sequence[Any] = ()
) -> dict[str, Any]:
    """Row count and schema of the secondary tables an asset writes (``<table>/rows``,
    ``<table>/columns``): Dagster shows one ``dagster/column_schema`` per asset."""
    metadata: dict[str, Any] = {}
    for table in tables:
        metadata[f"{table}/rows"] = row_count(conn, table, where, params)
        metadata[f"{table}/columns"] = dg.MetadataValue.table_schema(column_schema(conn, table))
    return metadata
