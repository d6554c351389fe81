"""The Spark stages in the shapes the asset graph uses (CSR matrices, ``FactorSet``, top-N arrays).

Dagster-free: each asset that runs on Spark calls one method of :class:`SparkStages` with the same inputs
and outputs as its single-machine code, so the graph, the storage and the catalog stay as they are.
Every method hands data over as Parquet under the hand-off folder (``[engine] data_uri``), one
sub-folder per stage, overwritten on each run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models.als import AlsSettings
from recsys_assets.engines import spark as engine


def weighting_arguments(weighting: Any) -> dict[str, Any]:
    """``[weighting]`` settings as :func:`engines.spark.weight_plays` keywords."""
    return {
        "scheme": weighting.scheme,
        "orientation": weighting.orientation,
        "k1": weighting.k1,
        "b": weighting.b,
        "tf": weighting.tf,
        "alpha": weighting.alpha,
        "scale": weighting.confidence_scale,
        "epsilon": weighting.confidence_epsilon,
    }


def write_factors(factors: np.ndarray, uri: str) -> str:
    """An (n, k) factor matrix as Parquet ``(id, f0..f{k-1})`` at ``uri`` (a folder holding one file),
    the layout :func:`engines.spark.recommend_all` reads."""
    import duckdb
    import pandas as pd

    folder = Path(uri.removeprefix("file://"))
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.parquet"):
        old.unlink()
    frame = pd.DataFrame({"id": np.arange(factors.shape[0], dtype=np.int32)})
    for i in range(factors.shape[1]):
        frame[f"f{i}"] = factors[:, i].astype(np.float32)
    conn = duckdb.connect()
    try:
        conn.register("factors", frame)
        conn.execute(f"COPY factors TO '{folder / 'part-0.parquet'}' (FORMAT parquet)")
    finally:
        conn.close()
    return uri


@dataclass
class SparkStages:
    """The Spark stages on one session, handing over under ``root`` (from ``EngineSettings.handoff_uri``)."""

    spark: Any
    root: str

    def _uri(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def weighted_matrix(self, conn: Any, shape: tuple[int, int], weighting: Any) -> sp.csr_matrix:
        """The weighted matrix of the warehouse's plays (``conn``: the DuckDB warehouse), weighted on
        Spark; returned as the users x artists float32 CSR the local consumers read, and left as
        Parquet at ``<root>/weighted`` for :meth:`als_factors`."""
        plays = engine.export_plays(conn, self._uri("plays"))
        return self._weighted(plays, "weighted", shape, weighting)

    def _weighted(self, plays_uri: str, name: str, shape: tuple[int, int], weighting: Any) -> sp.csr_matrix:
        engine.weight_plays(
            self.spark,
            plays_uri,
            self._uri(name),
            n_users=shape[0],
            n_artists=shape[1],
            **weighting_arguments(weighting),
        )
        return engine.read_pairs(self._uri(name), shape, "weight")

    def als_factors(self, shape: tuple[int, int], als: AlsSettings, weighted: str = "weighted") -> FactorSet:
        """Spark ALS on the weighted pairs :meth:`weighted_matrix` left (settings mapped as in
        :mod:`engines.spark`); factors in our id order."""
        factors, _ = engine.fit_als(
            self.spark,
            self._uri(weighted),
            als,
            n_users=shape[0],
            n_artists=shape[1],
            factors_uri=self._uri(f"factors-{weighted.split('/')[0]}"),
        )
        return factors

    def als_factors_of(self, matrix: sp.csr_matrix, als: AlsSettings, name: str = "als-input") -> FactorSet:
        """Spark ALS on a weighted matrix given in memory (the ``weighted_matrix`` asset's value): written
        to ``<root>/<name>`` first, so the fit never depends on what an earlier run left in the hand-off
        folder."""
        engine.write_pairs(matrix, self._uri(name, "pairs.parquet"), value="weight")
        return self.als_factors(matrix.shape, als, weighted=f"{name}/pairs.parquet")

    def recommendations(
        self, factors: FactorSet, played: sp.csr_matrix, n: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``n`` unplayed artists for every user from any model's factors, computed on Spark;
        ``(ids int32, scores float32)`` of shape (n_users, n) padded with -1 / -inf as
        ``core.topk.topk_dot`` returns them."""
        return self._top_n(factors, played, n, "recommendations")

    def _top_n(
        self, factors: FactorSet, played: sp.csr_matrix, n: int, name: str
    ) -> tuple[np.ndarray, np.ndarray]:
        base = self._uri(f"{name}-{factors.model}")
        write_factors(factors.user_factors, f"{base}/factors/users")
        write_factors(factors.item_factors, f"{base}/factors/artists")
        engine.write_pairs(played, f"{base}/played.parquet")
        engine.recommend_all(self.spark, f"{base}/factors", f"{base}/played.parquet", f"{base}/top", n=n)
        cols = engine.read_parquet(f"{base}/top", "user_id, rank, artist_id, score")
        n_users = played.shape[0]
        ids = np.full((n_users, n), -1, dtype=np.int32)
        scores = np.full((n_users, n), -np.inf, dtype=np.float32)
        ids[cols["user_id"], cols["rank"]] = cols["artist_id"]
        scores[cols["user_id"], cols["rank"]] = cols["score"]
        return ids, scores

    def evaluation(
        self, train: sp.csr_matrix, test: sp.csr_matrix, weighting: Any, als: AlsSettings, k: int
    ) -> tuple[FactorSet, dict[str, float]]:
        """ALS refitted on Spark on the weighted train split, and its top-k metrics computed on Spark
        (train pairs excluded). Returns the factors (for the full-ranking metrics, computed locally as
        for every model) and the metrics dict of :func:`engines.spark.ranking_metrics`."""
        engine.write_pairs(train, self._uri("eval", "train.parquet"))
        engine.write_pairs(test, self._uri("eval", "test.parquet"))
        self._weighted(self._uri("eval", "train.parquet"), "eval-weighted", train.shape, weighting)
        factors = self.als_factors(train.shape, als, weighted="eval-weighted")
        engine.recommend_all(
            self.spark,
            self._uri("factors-eval-weighted"),
            self._uri("eval", "train.parquet"),
            self._uri("eval", "top"),
            n=k,
        )
        metrics = engine.ranking_metrics(
            self.spark,
            self._uri("eval", "top"),
            self._uri("eval", "test.parquet"),
            k=k,
            n_artists=train.shape[1],
        )
        return factors, metrics
