"""Evaluation: a held-out split, every model refitted on train, metrics against baselines, a report."""

import base64
import datetime as dt

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, data_version, markdown_table
from recsys_assets.assets.factors import ensure_finite, fit_als_factors, fit_lsa_factors
from recsys_assets.assets.matrices import apply_weighting
from recsys_assets.core import metrics, report
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.split import Split, per_user_holdout, random_split
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import Settings, check_evaluation_k, check_lsa_factors, fingerprint
from recsys_assets.storage import atomic_path, bytes_hash, record_version

REPORT_METRICS = ("precision", "recall", "map", "ndcg", "auc", "mpr", "mpr_unweighted", "coverage")
# Metrics of the top-k lists; AUC and MPR rank every non-train item, so they carry no k.
CUTOFF_METRICS = {"precision", "recall", "map", "ndcg", "coverage"}


def make_split(play_matrix: sp.csr_matrix, settings: Settings) -> Split:
    """The configured train/test split of the play matrix."""
    ev = settings.evaluation
    if ev.split == "random":
        return random_split(play_matrix, test_fraction=ev.test_fraction, seed=ev.seed)
    return per_user_holdout(play_matrix, test_fraction=ev.test_fraction, min_items=ev.min_items, seed=ev.seed)


def metric_rows(
    model: str, fingerprint_: str, split: str, k: int, result: metrics.RankingReport
) -> list[dict]:
    """Rows of the ``evaluation`` table for one model's report."""
    values = result.as_dict()
    return [
        {
            "model": model,
            "settings_fingerprint": fingerprint_,
            "split": split,
            "metric": name,
            "k": k if name in CUTOFF_METRICS else None,
            "value": values[name],
        }
        for name in REPORT_METRICS
    ]


def tag_quality_rows(conn, related: pd.DataFrame, n_artists: int, k: int) -> list[dict]:
    """Related-artist quality from user tags (HetRec): mean tag-profile cosine between each artist and
    its top-``k`` related artists, per model, against the most-popular-artists baseline."""
    tags = conn.execute("SELECT artist_id, tag_id FROM artist_tags").fetchnumpy()
    if len(tags["artist_id"]) == 0:
        return []
    n_tags = int(tags["tag_id"].max()) + 1
    profiles = report.tag_profiles(tags["artist_id"], tags["tag_id"], n_artists, n_tags)
    queries = np.arange(n_artists)
    rows = []
    for model, group in related[related["rank"] <= k].groupby("model"):
        lists = np.full((n_artists, k), -1, dtype=np.int64)
        lists[group["artist_id"].to_numpy(), group["rank"].to_numpy() - 1] = group["related_id"].to_numpy()
        rows.append({"model": model, "value": report.related_tag_similarity(queries, lists, profiles)})
    popular = conn.execute(
        f"SELECT artist_id FROM plays GROUP BY artist_id ORDER BY count(*) DESC, artist_id LIMIT {k + 1}"
    ).fetchnumpy()["artist_id"]
    baseline = np.array([[a for a in popular if a != q][:k] for q in queries], dtype=np.int64)
    rows.append({"model": "popularity", "value": report.related_tag_similarity(queries, baseline, profiles)})
    return rows


def build_evaluation_assets(settings: Settings) -> list:
    threads, memory_budget = settings.runtime.threads, settings.runtime.memory_budget_bytes
    ev, als, lsa, weighting = settings.evaluation, settings.als, settings.lsa, settings.weighting
    split_name = f"{ev.split}-{ev.test_fraction:g}"
    # What shaped every evaluation number besides the model's own settings.
    provenance = (settings.data, weighting, ev)

    @dg.asset(
        group_name="evaluation",
        code_version=code_version("train_test_split-1", ev.split, ev.test_fraction, ev.min_items, ev.seed),
        description=f"Seeded {ev.split} split: {ev.test_fraction:.0%} held out for testing.",
    )
    def train_test_split(play_matrix: sp.csr_matrix) -> dg.Output[Split]:
        split = make_split(play_matrix, settings)
        return dg.Output(
            split,
            data_version=data_version(split.train, split.test),
            metadata={
                "train_nnz": int(split.train.nnz),
                "test_nnz": int(split.test.nnz),
                "test_users": int(np.sum(np.diff(split.test.indptr) > 0)),
            },
        )

    @dg.asset(
        group_name="evaluation",
        code_version=code_version("eval_als_factors-1", als, weighting),
        description="ALS refitted on the weighted train matrix with the production settings.",
    )
    def eval_als_factors(context: dg.AssetExecutionContext, train_test_split: Split) -> dg.Output[FactorSet]:
        factors = fit_als_factors(
            apply_weighting(train_test_split.train, weighting),
            als,
            threads,
            log=context.log,
            provenance=provenance,
        )
        ensure_finite(factors)
        return dg.Output(factors, data_version=data_version(factors.user_factors, factors.item_factors))

    @dg.asset(
        group_name="evaluation",
        code_version=code_version("eval_lsa_factors-1", lsa, weighting),
        description="LSA refitted on the weighted train matrix with the production settings.",
    )
    def eval_lsa_factors(train_test_split: Split) -> dg.Output[FactorSet]:
        check_lsa_factors(settings, train_test_split.train.shape)
        factors = fit_lsa_factors(
            apply_weighting(train_test_split.train, weighting), lsa, threads, provenance=provenance
        )
        ensure_finite(factors)
        return dg.Output(factors, data_version=data_version(factors.user_factors, factors.item_factors))

    hetrec = settings.data.source == "hetrec"

    @dg.asset(
        # Only HetRec has user tags to score related artists with; elsewhere the report does not read them.
        deps=["related_artists"] if hetrec else [],
        group_name="evaluation",
        kinds={"duckdb", "html"},
        code_version=code_version("evaluation_report-2", ev.k),
        description="Precision, recall, MAP, NDCG, AUC, MPR and coverage per model against popularity and "
        "random baselines (random: exact expectations); accumulates in the `evaluation` table; HTML report "
        "with charts.",
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBResource,
        store: RecsysStore,
        train_test_split: Split,
        eval_als_factors: FactorSet,
        eval_lsa_factors: FactorSet,
    ) -> dg.MaterializeResult:
        check_evaluation_k(settings, train_test_split.train.shape[1])
        split, k = train_test_split, ev.k
        rows: list[dict] = []
        for factors in (eval_als_factors, eval_lsa_factors):
            result = metrics.evaluate_factors(
                factors.user_factors,
                factors.item_factors,
                split.train,
                split.test,
                k=k,
                threads=threads,
                memory_budget_bytes=memory_budget,
            )
            rows += metric_rows(factors.model, factors.settings_fingerprint, split_name, k, result)
        # Baselines without a score GEMM: popularity ranks everyone by one shared sorted list (exactly the
        # rank-1 model's report); random's metrics are their exact expectations (no sample).
        popularity = metrics.evaluate_popularity(split.train, split.test, k=k, threads=threads)
        rows += metric_rows("popularity", fingerprint(*provenance, "popularity"), split_name, k, popularity)
        random = metrics.expected_random(split.train, split.test, k=k)
        rows += metric_rows("random", fingerprint(*provenance, "random-expected"), split_name, k, random)
        run_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        with warehouse_connection(warehouse) as conn:
            tag_rows = []
            if hetrec:
                related = conn.execute(
                    "SELECT model, artist_id, rank, related_id FROM related_artists WHERE rank <= ?", [k]
                ).df()
                tag_rows = tag_quality_rows(conn, related, split.train.shape[1], k)
            # Related-artist quality is measured on the production lists (all data), not on the split.
            table_rows = rows + [
                {
                    "model": r["model"],
                    "settings_fingerprint": fingerprint(settings.data, weighting, r["model"]),
                    "split": "all",
                    "metric": "related_tag_similarity",
                    "k": k,
                    "value": r["value"],
                }
                for r in tag_rows
            ]
            table = pd.DataFrame(table_rows).assign(run_at=run_at)
            table["k"] = table["k"].astype("Int64")  # NULL where a metric has no cut-off
            losses = {"als": eval_als_factors.loss}
            extra = {"related-artist tag similarity (top-10)": tag_rows} if tag_rows else {}
            html = report.html_report(
                "recsys evaluation", rows, losses, extra, generated_at=run_at.isoformat(" ", "seconds")
            ).encode()
            # The rows and the report's hash (the data version) commit together; the report file follows,
            # so a kill in between leaves a file that differs from the ledger and the asset re-runs.
            version = bytes_hash(html)
            conn.register("evaluation_rows", table)
            conn.execute("BEGIN TRANSACTION")
            conn.execute("INSERT INTO evaluation BY NAME SELECT * FROM evaluation_rows")
            record_version(conn, "evaluation_report", version, {"evaluation_report.html": version})
            conn.execute("COMMIT")
            conn.unregister("evaluation_rows")
        html_path = store.artifact_path("evaluation_report.html")
        with atomic_path(html_path) as tmp:
            tmp.write_bytes(html)
        chart = base64.b64encode(report.metrics_chart_png(rows)).decode()
        loss_chart = base64.b64encode(report.loss_curve_png(losses)).decode()
        metadata = {
            "metrics": dg.MetadataValue.md(report.metrics_markdown(rows)),
            "chart": dg.MetadataValue.md(f"![metrics](data:image/png;base64,{chart})"),
            "als_loss_curve": dg.MetadataValue.md(
                f"![ALS training loss](data:image/png;base64,{loss_chart})"
            ),
            "html_report": dg.MetadataValue.path(str(html_path)),
            "split": split_name,
            "k": k,
        }
        if tag_rows:
            metadata["related_tag_similarity"] = markdown_table(tag_rows)
        context.log.info(f"evaluation written to {html_path}")
        return dg.MaterializeResult(data_version=dg.DataVersion(version), metadata=metadata)

    return [train_test_split, eval_als_factors, eval_lsa_factors, evaluation_report]
