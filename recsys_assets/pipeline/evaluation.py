"""Held-out evaluation: the split, every model's metric rows against baselines, tag quality of the
related-artist lists, and the writer of the ``evaluation`` table."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.core import metrics, report
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model
from recsys_assets.core.split import Split, per_user_holdout, random_split
from recsys_assets.progress import Progress
from recsys_assets.storage import record_version

REPORT_METRICS = ("precision", "recall", "map", "ndcg", "auc", "mpr", "mpr_unweighted", "coverage")
# Metrics of the top-k lists; AUC and MPR rank every non-train item, so they carry no k.
CUTOFF_METRICS = {"precision", "recall", "map", "ndcg", "coverage"}
# Value-predicting models: errors of the predicted held-out values.
VALUE_METRICS = ("rmse", "mae")


def make_split(
    play_matrix: sp.csr_matrix, split: str, test_fraction: float, min_items: int, seed: int
) -> Split:
    """The train/test split of the play matrix that ``[evaluation]`` configures
    (:meth:`~recsys_assets.settings.EvaluationSettings.split_params`)."""
    if split == "random":
        return random_split(play_matrix, test_fraction=test_fraction, seed=seed)
    return per_user_holdout(play_matrix, test_fraction=test_fraction, min_items=min_items, seed=seed)


def evaluate_model(
    model: Model,
    factors: FactorSet,
    split: Split,
    k: int,
    threads: int,
    memory_budget: int,
    log: Callable[[str], None] | None = None,
) -> metrics.RankingReport:
    """``model``'s ranking report of ``factors`` on ``split`` (:meth:`Model.evaluate`), followed live:
    users evaluated / total with rate and time left, on a terminal as a bar and into ``log`` as lines
    (:class:`~recsys_assets.progress.Progress`)."""
    with Progress(f"evaluate {factors.model}", unit="users", log=log) as progress:
        return model.evaluate(
            factors,
            split.train,
            split.test,
            k=k,
            threads=threads,
            memory_budget_bytes=memory_budget,
            progress=progress,
        )


def metric_rows(
    model: str, fingerprint_: str, split: str, k: int, result: metrics.RankingReport
) -> list[dict]:
    """Rows of the ``evaluation`` table for one model's ranking report."""
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


def value_errors(factors: FactorSet, test: sp.csr_matrix) -> dict[str, float]:
    """RMSE and MAE of ``factors.predict`` against the stored values of ``test`` (users x artists):
    ``rmse = sqrt(mean((pred - y)^2))``, ``mae = mean(|pred - y|)`` over the held-out pairs."""
    coo = test.tocoo()
    if coo.nnz == 0:
        return {"rmse": float("nan"), "mae": float("nan")}
    error = factors.predict(coo.row, coo.col) - coo.data.astype(np.float64)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def value_metric_rows(
    model: Model, settings: Any, factors: FactorSet, test: sp.csr_matrix, split: str
) -> list[dict]:
    """RMSE / MAE rows of a value-predicting model (none for a ranking-only model); held-out values
    go through the model's ``value_transform`` first when it has one (the model predicts those)."""
    if not model.predicts_values:
        return []
    target = model.value_transform(test, settings) if model.value_transform is not None else test
    errors = value_errors(factors, sp.csr_matrix(target))
    return [
        {
            "model": factors.model,
            "settings_fingerprint": factors.settings_fingerprint,
            "split": split,
            "metric": name,
            "k": None,
            "value": errors[name],
        }
        for name in VALUE_METRICS
    ]


def tag_quality_rows(conn: Any, related: pd.DataFrame, n_artists: int, k: int) -> list[dict]:
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


def write_evaluation(conn: Any, table: pd.DataFrame, version: str, report_file: str) -> None:
    """Append ``table`` to ``evaluation`` and record the report's hash ``version`` (its file
    ``report_file`` under the artifacts folder) in the ledger, in one transaction."""
    conn.register("evaluation_rows", table)
    conn.execute("BEGIN TRANSACTION")
    conn.execute("INSERT INTO evaluation BY NAME SELECT * FROM evaluation_rows")
    record_version(conn, "evaluation_report", version, {report_file: version})
    conn.execute("COMMIT")
    conn.unregister("evaluation_rows")
