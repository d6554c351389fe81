"""What the Dagster UI shows of the materialized graph: numbers it can plot, table schemas, row
counts and lineage, the report's provenance (issue 14, "The UI")."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from recsys_assets.assets._tables import COLUMN_DOCS
from recsys_assets.catalog import Catalog
from recsys_assets.pipeline.evaluation import CUTOFF_METRICS, REPORT_METRICS
from recsys_assets.sql import read_sql

pytestmark = pytest.mark.slow

# The boundary between two cells of a markdown or an HTML table row.
CELL = r"(?:\s*\|\s*|</td><td>)"


def _metadata(instance, key: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(key))
    return dict(event.asset_materialization.metadata)


def _table_assets(defs) -> list[str]:
    """Assets that write warehouse tables: kind duckdb, except the catalog that publishes them."""
    graph = defs.resolve_asset_graph()
    return sorted(
        key.to_user_string()
        for key in graph.get_all_asset_keys()
        if "duckdb" in graph.get(key).kinds and key.to_user_string() != "published_catalog"
    )


def test_evaluation_metrics_are_numeric_metadata_equal_to_the_table(materialized):
    settings, home, _, instance, _ = materialized
    meta = _metadata(instance, "evaluation_report")
    k = settings.evaluation.k
    with Catalog(home).connect() as conn:
        table = {
            (m, metric): value
            for m, metric, value in conn.execute(
                "SELECT model, metric, value FROM evaluation WHERE run_at = (SELECT max(run_at) FROM evaluation)"
            ).fetchall()
        }
    for model in ("als", "lsa", "popularity", "random"):
        for metric in REPORT_METRICS:
            key = f"{model}/{metric}@{k}" if metric in CUTOFF_METRICS else f"{model}/{metric}"
            assert isinstance(meta[key], dg.FloatMetadataValue), key  # plottable, not text
            assert meta[key].value == pytest.approx(table[model, metric], rel=1e-12), key
    assert "metrics" in meta  # the table stays
    for name in ("seconds", "dataset/users", "dataset/plays", "split_seed"):
        assert isinstance(meta[name], dg.FloatMetadataValue | dg.IntMetadataValue), name


def test_other_stages_report_numbers(materialized):
    _, _, _, instance, _ = materialized
    ingest = _metadata(instance, "raw_plays")
    for name in ("rows_loaded", "rows_rejected", "seconds"):
        assert isinstance(ingest[name], dg.IntMetadataValue | dg.FloatMetadataValue), name
    als = _metadata(instance, "als_factors")
    assert isinstance(als["final_loss"], dg.FloatMetadataValue) and als["final_loss"].value > 0
    assert isinstance(_metadata(instance, "related_artists")["recall_at_10_als"], dg.FloatMetadataValue)


def test_every_table_asset_has_row_count_and_described_schema(materialized):
    _, home, defs, instance, _ = materialized
    assets = _table_assets(defs)
    assert {"raw_plays", "als_factors", "recommendations", "evaluation_report"} <= set(assets)
    with Catalog(home).connect() as conn:
        for asset in assets:
            meta = _metadata(instance, asset)
            table = meta["table"].value
            schema = meta["dagster/column_schema"].schema
            published = [r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()]
            assert [c.name for c in schema.columns] == published, asset
            assert all(c.description for c in schema.columns), asset
            model = asset.removesuffix("_factors") if asset.endswith("_factors") else None
            where, params = ("WHERE model = ?", [model]) if model else ("", [])
            rows = conn.execute(f"SELECT count(*) FROM {table} {where}", params).fetchone()[0]
            assert meta["dagster/row_count"].value == rows > 0, asset


def test_every_published_column_is_described(materialized):
    _, home, *_ = materialized
    with Catalog(home).connect() as conn:
        for table, docs in COLUMN_DOCS.items():
            if table in ("tags", "artist_tags"):  # HetRec only
                continue
            columns = {r[0] for r in conn.execute(f"DESCRIBE {table}").fetchall()}
            assert columns == set(docs), table


def test_answer_tables_have_column_lineage_to_the_ingested_ids(materialized):
    _, _, _, instance, _ = materialized
    lineage = _metadata(instance, "recommendations")["dagster/column_lineage"].value
    deps = lineage.deps_by_column
    assert deps["artist_id"] == [dg.TableColumnDep(dg.AssetKey("raw_plays"), "artist_id")]
    assert deps["user_id"] == [dg.TableColumnDep(dg.AssetKey("raw_plays"), "user_id")]
    related = _metadata(instance, "related_artists")["dagster/column_lineage"].value
    assert set(related.deps_by_column) == {"artist_id", "related_id"}


def test_recommendations_preview_names_the_top_users_recommendations(materialized):
    _, home, _, instance, _ = materialized
    preview = _metadata(instance, "recommendations")["preview_als"].value
    with Catalog(home).connect() as conn:
        user, name = conn.execute(
            """
            WITH top AS (SELECT user_id FROM plays GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT 1)
            SELECT u.user_key, a.name FROM top JOIN recommendations r USING (user_id)
            JOIN users u USING (user_id) JOIN artists a ON a.artist_id = r.artist_id
            WHERE r.model = 'als' AND r.rank = 1
            """
        ).fetchone()
    line = next(row for row in preview.splitlines() if row.startswith(f"| {user} |"))
    assert line.split(" | ")[2].split(", ")[0] == name
    assert len(preview.splitlines()) == 2 + 5


def test_evaluation_records_the_split_seed(materialized):
    settings, home, *_ = materialized
    with Catalog(home).connect() as conn:
        seeds = conn.execute("SELECT DISTINCT split, split_seed FROM evaluation").fetchall()
    assert seeds and all(seed == settings.evaluation.seed for split, seed in seeds if split != "all")
    assert all(seed is None for split, seed in seeds if split == "all")


def test_an_older_evaluation_table_gains_the_seed_column():
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE evaluation (run_at TIMESTAMP NOT NULL, model VARCHAR NOT NULL, settings_fingerprint "
        "VARCHAR NOT NULL, split VARCHAR NOT NULL, metric VARCHAR NOT NULL, k INTEGER, value DOUBLE NOT NULL)"
    )
    conn.execute("INSERT INTO evaluation VALUES (now(), 'als', 'f', 'per_user-0.2', 'auc', NULL, 0.9)")
    conn.execute(read_sql("output_schema.sql"))
    conn.execute(read_sql("output_schema.sql"))  # idempotent
    assert conn.execute("SELECT model, split_seed FROM evaluation").fetchall() == [("als", None)]


def test_report_states_dataset_provenance_and_metric_meanings(materialized):
    settings, home, _, instance, _ = materialized
    meta = _metadata(instance, "evaluation_report")
    page = Path(meta["html_report"].value).read_text()
    markdown = meta["report"].value
    with Catalog(home).connect() as conn:
        plays = conn.execute("SELECT count(*) FROM plays").fetchone()[0]
        fingerprints = dict(
            conn.execute(
                "SELECT DISTINCT model, settings_fingerprint FROM evaluation WHERE split != 'all'"
            ).fetchall()
        )
    s = settings.synthetic
    for text in (page, markdown):
        assert "synthetic" in text
        for name, value in (("users", s.n_users), ("artists", s.n_artists), ("plays", plays)):
            assert re.search(rf"\b{name}{CELL}{value}\b", text), (name, value)
        for model, fingerprint in fingerprints.items():
            assert re.search(rf"\b{model}{CELL}{fingerprint}{CELL}", text), model
        assert "full AUC" in text and "implicit" in text and "weighted by its held-out value" in text
    seed_cells = re.findall(r"<td>per_user-[0-9.]+</td><td>(\d+)</td>", page)
    assert seed_cells and set(seed_cells) == {str(settings.evaluation.seed)}


def test_report_pages_are_linked_at_urls_the_report_server_answers(materialized):
    """The asset page links the report (and each artist map) over http at [ui] artifacts_port; the
    server `recsys ui` starts for the home's artifacts answers those paths with the files written."""
    import http.client
    import importlib.util
    import threading
    import urllib.parse

    from recsys_assets.artifact_server import make_server

    settings, home, _, instance, _ = materialized
    meta = _metadata(instance, "evaluation_report")
    links = {name: v.url for name, v in meta.items() if isinstance(v, dg.UrlMetadataValue)}
    port = settings.ui.artifacts_port
    assert links["report_url"] == f"http://127.0.0.1:{port}/evaluation_report.html"
    maps = {name for name in links if name.startswith("artist_map_")}
    if importlib.util.find_spec("sklearn") is not None:  # the maps need scikit-learn
        assert maps == {f"artist_map_{m}" for m in settings.models.enabled}
    server = make_server(Path(home) / "artifacts", 0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for url in links.values():
            parts = urllib.parse.urlsplit(url)
            assert (parts.hostname, parts.port) == ("127.0.0.1", port)
            conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
            conn.request("GET", parts.path)
            response = conn.getresponse()
            body = response.read()
            conn.close()
            assert response.status == 200, url
            assert body == (Path(home) / "artifacts" / urllib.parse.unquote(parts.path[1:])).read_bytes()
    finally:
        server.shutdown()
        server.server_close()
    assert Path(meta["html_report"].value).read_bytes().startswith(b"<!")


def test_refresh_runs_are_recorded_in_the_workspace_code_location(materialized):
    """What the Overview timeline needs: each run of `recsys refresh` names the code location
    `recsys ui` serves (runs of `execute_in_process` name none and the timeline skips them)."""
    _, _, _, instance, result = materialized
    runs = [instance.get_run_by_id(run_id) for run_id in result.run_ids]
    assert runs
    for run in runs:
        assert run.remote_job_origin.repository_origin.code_location_origin.location_name == "recsys"
        assert run.remote_job_origin.repository_origin.repository_name == "__repository__"
