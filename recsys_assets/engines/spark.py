"""The heavy stages on Apache Spark: weighting, implicit ALS, all-user top-N and ranking metrics.

Dagster-free: every stage takes a ``SparkSession`` (from :func:`spark_session`, or from
``dagster_pyspark``'s resource configured with :func:`session_config`) and hands data over as Parquet
under the ``[engine] data_uri`` folder. Ids are our 0-based ``user_id`` / ``artist_id`` throughout, so
the factors come back as a :class:`~recsys_assets.core.factorset.FactorSet` in our order and every
single-machine consumer (ANN indexes, related artists, the catalog) reads them unchanged.

Mapping our ALS settings to Spark MLlib's ``ALS(implicitPrefs=True)``
---------------------------------------------------------------------
Ours (``core/als.py``, implicit's convention) solves, for a user row,
``(YᵀY + λI + Σ_i (c_ui - 1) y_i y_iᵀ) x_u = Σ_i c_ui y_i`` with ``c_ui = α w_ui``.
Spark solves ``(YᵀY + λ_s n_u I + Σ_i α_s r_ui y_i y_iᵀ) x_u = Σ_i (1 + α_s r_ui) y_i`` where ``n_u`` is
the number of positive ratings of the row (ALS-WR) and ``c_ui = 1 + α_s r_ui``. We pass ``r = w`` and
``α_s = α`` (Spark's confidence is ours plus one, negligible where ``α w`` is well above one, as it is for
the BM25 weights of real play counts), and ``λ_s = λ / n̄`` with ``n̄ = nnz / n_artists`` (the mean count of an
artist row), so an average artist row is regularised as ours; rarer rows are regularised less and busier
ones more. Of the three means tried on HetRec (random 80/20 split, seed 0, default settings; ours p@10
0.2026), the artist-row mean came closest: p@10 0.2038 (λ_s = 0.237) against 0.2101 for the user-row
mean (λ_s = 0.025) and 0.2096 for their geometric mean (``tests/test_spark.py`` keeps it within 0.01).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models.als import AlsSettings
from recsys_assets.engines.settings import EngineSettings

MIN_JAVA = 17
INSTALL_JAVA = (
    "install OpenJDK 17 (e.g. apt-get install openjdk-17-jre-headless) or set JAVA_HOME to a JDK 17+"
)
INSTALL_PYSPARK = 'pip install -e ".[spark]"'
# Settings Spark gets unless [engine] conf says otherwise: no console progress bars or UI server in a
# batch job, warnings only in the log, and few shuffle partitions (ours are a few per core, not 200).
_DEFAULT_CONF = {
    "spark.app.name": "recsys",
    "spark.ui.showConsoleProgress": "false",
    "spark.ui.enabled": "false",
    "spark.log.level": "WARN",
    "spark.sql.shuffle.partitions": "8",
}
_LOCAL_MASTER = re.compile(r"local(\[(\*|\d+)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]")


class SparkEngineError(RuntimeError):
    """The Spark engine cannot run: what is missing or unreachable and what to do, in one line."""


# ---------------------------------------------------------------------------------------------------
# Checks before any JVM starts, and the session.


def check_pyspark() -> None:
    """Raise :class:`SparkEngineError` when pyspark cannot be imported."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        raise SparkEngineError(f'[engine] kind = "spark" needs pyspark: {INSTALL_PYSPARK}') from None


def check_java() -> str:
    """The ``java`` Spark will launch (``$JAVA_HOME/bin/java``, else ``java`` on ``PATH``), checked to
    be Java 17 or newer; :class:`SparkEngineError` saying what to install otherwise."""
    home = os.environ.get("JAVA_HOME")
    if home:
        java = str(Path(home) / "bin" / "java")
        if not os.access(java, os.X_OK):
            raise SparkEngineError(
                f"JAVA_HOME={home} has no bin/java; the Spark engine needs Java: {INSTALL_JAVA}"
            )
    else:
        found = shutil.which("java")
        if found is None:
            raise SparkEngineError(
                f"no Java found (JAVA_HOME unset, no java on PATH); the Spark engine needs it: {INSTALL_JAVA}"
            )
        java = found
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
        text = out.stderr + out.stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SparkEngineError(f"{java} -version failed ({exc}); {INSTALL_JAVA}") from None
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    major = int(match.group(1)) if match else 0
    if major == 1 and match and match.group(2):  # "1.8.0_x" spells Java 8
        major = int(match.group(2))
    if major < MIN_JAVA:
        found_version = f"Java {major}" if major else "an unrecognised Java"
        raise SparkEngineError(f"{java} is {found_version}; Spark 4 needs Java {MIN_JAVA}+: {INSTALL_JAVA}")
    return java


def check_master(master: str, timeout: float = 5.0) -> None:
    """Raise :class:`SparkEngineError` when ``master`` is malformed or, for a standalone cluster
    (``spark://host:port[,host:port]``), when no listed master accepts a TCP connection. Other masters
    (``yarn``, ``k8s://...``) are left to Spark."""
    if master.startswith("local"):
        if not _LOCAL_MASTER.fullmatch(master):
            raise SparkEngineError(
                f"[engine] master = {master!r} is not local, local[N], local[*] or local[N,F]"
            )
        return
    if not master.startswith("spark://"):
        return
    reasons = []
    for address in master.removeprefix("spark://").split(","):
        host, _, port = address.partition(":")
        try:
            with socket.create_connection((host, int(port or 7077)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            reasons.append(f"{address}: {getattr(exc, 'strerror', None) or exc}")
    raise SparkEngineError(
        f"Spark master {master} is unreachable ({'; '.join(reasons)}): start it, or check [engine] master"
    )


def preflight(engine: EngineSettings) -> None:
    """Every check that needs no JVM: pyspark importable, Java 17+, master reachable. Cheap (one
    ``java -version``); call it at settings load so a bad setup fails before any asset runs."""
    check_pyspark()
    check_java()
    check_master(engine.master)


def session_config(engine: EngineSettings) -> dict[str, str]:
    """The Spark configuration a session for ``engine`` is built with (what ``dagster_pyspark``'s
    ``PySparkResource(spark_config=...)`` takes): our defaults, the master, then ``[engine] conf``."""
    return {**_DEFAULT_CONF, "spark.master": engine.master, **engine.spark_conf()}


def _one_line(exc: BaseException) -> str:
    """The first meaningful line of a (possibly Java) exception, without the stack trace."""
    text = str(getattr(exc, "java_exception", None) or exc).strip()
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(exc).__name__)
    return first[:300]


def spark_session(engine: EngineSettings, create: Callable[[], Any] | None = None) -> Any:
    """A ``SparkSession`` for ``engine`` after :func:`preflight`; any failure to start is one line.

    ``create`` builds the session (e.g. ``lambda: resource.spark_session`` for a ``dagster_pyspark``
    resource); default: ``SparkSession.builder`` with :func:`session_config`. A running session with
    another master is stopped first (one JVM serves one master). Python workers run this interpreter
    unless ``PYSPARK_PYTHON`` says otherwise.
    """
    preflight(engine)
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    active = SparkSession.getActiveSession()
    if active is not None and active.sparkContext.master != engine.master:
        active.stop()
    if create is None:

        def create() -> Any:
            builder = SparkSession.builder
            for key, value in session_config(engine).items():
                builder = builder.config(key, value)
            return builder.getOrCreate()

    try:
        return create()
    except Exception as exc:  # py4j / pyspark errors of every kind: report, never the JVM trace
        raise SparkEngineError(
            f"Spark session on {engine.master} failed to start: {_one_line(exc)}"
        ) from None


# ---------------------------------------------------------------------------------------------------
# Hand-off: Parquet written and read on this machine with DuckDB (no pyarrow needed).


def _duckdb_path(uri: str) -> str:
    return uri.removeprefix("file://")


def write_pairs(matrix: sp.spmatrix, path: str, value: str = "plays") -> str:
    """Write the stored entries of a users x artists matrix as Parquet ``(user_id, artist_id, <value>)``
    (int32, int32, float64) at ``path``; returns ``path``. For splits and tests: the pipeline exports the
    warehouse's ``plays`` table with one ``COPY`` instead."""
    import duckdb

    coo = sp.coo_matrix(matrix)
    frame = {
        "user_id": coo.row.astype(np.int32),
        "artist_id": coo.col.astype(np.int32),
        value: coo.data.astype(np.float64),
    }
    Path(_duckdb_path(path)).parent.mkdir(parents=True, exist_ok=True)
    conn = duckdb.connect()
    try:
        conn.register("pairs", _frame(frame))
        conn.execute(f"COPY pairs TO '{_duckdb_path(path)}' (FORMAT parquet)")
    finally:
        conn.close()
    return path


def export_plays(conn: Any, uri: str) -> str:
    """Export the warehouse's ``plays`` table (``user_id, artist_id, plays``; ids 0-based as in the play
    matrix) from the DuckDB connection ``conn`` as one Parquet file ``<uri>/plays.parquet`` for
    :func:`weight_plays`; returns its path. A local folder is created; ``s3://`` and friends need DuckDB's
    ``httpfs`` extension loaded on ``conn``."""
    target = f"{uri.rstrip('/')}/plays.parquet"
    if "://" not in uri or uri.startswith("file://"):
        Path(_duckdb_path(uri)).mkdir(parents=True, exist_ok=True)
    conn.execute(
        f"COPY (SELECT user_id, artist_id, plays FROM plays ORDER BY user_id, artist_id) "
        f"TO '{_duckdb_path(target)}' (FORMAT parquet)"
    )
    return target


def _frame(columns: dict[str, np.ndarray]) -> Any:
    import pandas as pd

    return pd.DataFrame(columns)


def read_pairs(path: str, shape: tuple[int, int], value: str) -> sp.csr_matrix:
    """A Parquet folder or file of ``(user_id, artist_id, <value>)`` as a float32 CSR of ``shape``."""
    cols = read_parquet(path, f"user_id, artist_id, {value}")
    X = sp.csr_matrix((cols[value].astype(np.float32), (cols["user_id"], cols["artist_id"])), shape=shape)
    X.sum_duplicates()
    X.sort_indices()
    return X


def read_parquet(path: str, columns: str) -> dict[str, np.ndarray]:
    """``columns`` (SQL select list) of a Parquet file, or of every ``*.parquet`` in a folder, as numpy
    arrays (DuckDB reads them; local paths, or remote ones DuckDB can reach)."""
    import duckdb

    local = _duckdb_path(path)
    source = f"{local}/*.parquet" if Path(local).is_dir() else local
    conn = duckdb.connect()
    try:
        return conn.execute(f"SELECT {columns} FROM read_parquet('{source}')").fetchnumpy()
    finally:
        conn.close()


# ---------------------------------------------------------------------------------------------------
# Weighting.


def weight_plays(
    spark: Any,
    plays_uri: str,
    out_uri: str,
    *,
    n_users: int,
    n_artists: int,
    scheme: str = "bm25",
    orientation: str = "artist_user",
    k1: float = 100.0,
    b: float = 0.8,
    tf: str = "sqrt",
    alpha: float = 40.0,
    scale: str = "linear",
    epsilon: float = 1.0,
) -> int:
    """Weight raw plays on Spark as :func:`recsys_assets.core.weighting.weight_user_items` does.

    Reads Parquet ``(user_id, artist_id, plays)`` at ``plays_uri`` (duplicate pairs are summed), writes
    ``(user_id, artist_id, weight)`` (float32) at ``out_uri`` and returns the number of pairs. BM25 and
    TF-IDF treat artists (``artist_user``) or users as documents; ``n_users`` / ``n_artists`` are the
    matrix shape (the document count ``N`` of the IDF and the mean document length include empty rows,
    as on one machine). Formulas: ``core/weighting.py``; computed in float64.
    """
    from pyspark.sql import functions as F

    if scheme not in ("raw", "bm25", "tfidf", "confidence"):
        raise ValueError(f"unknown weighting scheme {scheme!r}; use raw, bm25, tfidf or confidence")
    plays = (
        spark.read.parquet(plays_uri)
        .groupBy("user_id", "artist_id")
        .agg(F.sum(F.col("plays").cast("double")).alias("x"))
    )
    bad = plays.filter(F.isnan("x") | (F.col("x") < 0) | (F.col("x") == float("inf"))).count()
    if bad:
        raise ValueError(f"{plays_uri}: {bad} (user, artist) pairs have negative or non-finite plays")
    x = F.col("x")
    if scheme == "raw":
        weighted = plays.withColumn("w", x)
    elif scheme == "confidence":
        f = x if scale == "linear" else F.log1p(x / F.lit(epsilon))
        weighted = plays.withColumn("w", 1.0 + alpha * f)
    else:
        doc, term = ("artist_id", "user_id") if orientation == "artist_user" else ("user_id", "artist_id")
        n_docs = n_artists if orientation == "artist_user" else n_users
        idf = plays.groupBy(term).agg(
            F.greatest(
                F.lit(0.0), F.lit(math.log(max(n_docs, 1))) - F.log1p(F.count("*").cast("double"))
            ).alias("idf")
        )
        weighted = plays.join(idf, term)
        if scheme == "bm25":
            total = plays.agg(F.sum("x")).first()[0] or 0.0
            mean_len = total / n_docs if n_docs and total > 0 else 1.0
            lengths = plays.groupBy(doc).agg(F.sum("x").alias("len"))
            norm = (1.0 - b) + b * F.col("len") / F.lit(mean_len)
            weighted = weighted.join(lengths, doc).withColumn(
                "w", x * (k1 + 1.0) / (k1 * norm + x) * F.col("idf")
            )
        else:
            tfx = {"sqrt": F.sqrt(x), "log": F.log1p(x), "raw": x}[tf]
            weighted = weighted.withColumn("w", tfx * F.col("idf"))
    out = weighted.select("user_id", "artist_id", F.col("w").cast("float").alias("weight"))
    out.write.mode("overwrite").parquet(out_uri)
    return spark.read.parquet(out_uri).count()


# ---------------------------------------------------------------------------------------------------
# ALS.


@dataclass(frozen=True)
class SparkAlsParams:
    """Spark ALS parameters mapped from ours (module docstring): ``regParam``, ``alpha``."""

    reg_param: float
    alpha: float


def map_als_settings(settings: AlsSettings, nnz: int, n_artists: int) -> SparkAlsParams:
    """Spark's ``regParam`` and ``alpha`` for our ``[als]`` settings on a matrix of ``nnz`` stored pairs
    and ``n_artists`` columns: ``regParam = λ / (nnz / n_artists)``, ``alpha = α`` (module docstring)."""
    mean_row = nnz / n_artists if n_artists and nnz else 1.0
    return SparkAlsParams(reg_param=settings.regularization / mean_row, alpha=settings.alpha)


def fit_als(
    spark: Any,
    weighted_uri: str,
    settings: AlsSettings,
    *,
    n_users: int,
    n_artists: int,
    factors_uri: str,
    params: SparkAlsParams | None = None,
    blocks: int | None = None,
) -> tuple[FactorSet, Any]:
    """Fit ``pyspark.ml.recommendation.ALS`` (implicit preferences) to the weighted pairs at
    ``weighted_uri`` with our ``settings`` mapped by :func:`map_als_settings` (or ``params``).

    The factors are written as Parquet ``(id, f0..f{k-1})`` under ``factors_uri`` (``users``, ``artists``)
    and returned as a :class:`FactorSet` (model ``"als"``, rows in our 0-based id order; a user or artist
    without any pair gets a zero row, as our ALS gives it); also returns the Spark ``ALSModel``.
    ``blocks`` sets Spark's user and item block counts (default: the session's default parallelism).
    Spark reports no loss per iteration, so ``loss`` and ``seconds`` stay empty and the fit's wall time
    is in ``curves["spark"]``.
    """
    from pyspark.ml.recommendation import ALS

    weighted = spark.read.parquet(weighted_uri)
    nnz = weighted.count()
    params = params or map_als_settings(settings, nnz, n_artists)
    blocks = blocks or spark.sparkContext.defaultParallelism
    checkpoints = f"{factors_uri.rstrip('/')}/_checkpoints"
    spark.sparkContext.setCheckpointDir(checkpoints)
    als = ALS(
        rank=settings.factors,
        maxIter=settings.iterations,
        regParam=params.reg_param,
        alpha=params.alpha,
        implicitPrefs=True,
        userCol="user_id",
        itemCol="artist_id",
        ratingCol="weight",
        seed=settings.seed,
        numUserBlocks=blocks,
        numItemBlocks=blocks,
        checkpointInterval=10,
    )
    start = time.perf_counter()
    model = als.fit(weighted)
    users = _factor_matrix(model.userFactors, f"{factors_uri}/users", n_users, settings.factors)
    items = _factor_matrix(model.itemFactors, f"{factors_uri}/artists", n_artists, settings.factors)
    seconds = time.perf_counter() - start
    return (
        FactorSet(
            model="als",
            user_factors=users,
            item_factors=items,
            curves={
                "spark": {"fit_seconds": [seconds], "reg_param": [params.reg_param], "alpha": [params.alpha]}
            },
        ),
        model,
    )


def _factor_matrix(frame: Any, uri: str, rows: int, k: int) -> np.ndarray:
    """Spark's ``(id, features)`` factors, written as ``(id, f0..)`` Parquet, as a float32 (rows, k)
    matrix in id order (ids without a row stay zero)."""
    from pyspark.sql import functions as F

    frame.select("id", *(F.col("features")[i].alias(f"f{i}") for i in range(k))).write.mode(
        "overwrite"
    ).parquet(uri)
    cols = read_parquet(uri, "*")
    out = np.zeros((rows, k), dtype=np.float32)
    out[cols["id"]] = np.column_stack([cols[f"f{i}"] for i in range(k)]).astype(np.float32)
    return out


# ---------------------------------------------------------------------------------------------------
# All-user top-N with played artists removed, and ranking metrics.


def recommend_all(
    spark: Any,
    factors_uri: str,
    played_uri: str,
    out_uri: str,
    *,
    n: int,
    user_block: int = 2048,
    artist_block: int = 8192,
) -> int:
    """Top-``n`` artists for every user with factors, already-played artists removed.

    ``factors_uri`` holds ``users`` and ``artists`` Parquet ``(id, f0..f{k-1})`` (as :func:`fit_als`
    writes them); ``played_uri`` the ``(user_id, artist_id, ...)`` pairs to exclude. Score = dot product.
    Users are cut into blocks of ``user_block`` ids and artists into blocks of ``artist_block``; every
    (user block, artist block) tile is scored with one GEMM on an executor, its played cells set to
    -inf and its top-n kept; the tiles of a user block are then merged (``reduceByKey``). So no executor
    holds more than one tile (``user_block x artist_block`` float32) and the per-block top lists, and no
    user x artist matrix is ever materialised. Spark's ``recommendForAllUsers`` uses the same blocking
    but cannot exclude pairs. Writes Parquet ``(user_id, rank, artist_id, score)`` (rank from 0, best
    first) at ``out_uri``; a user with fewer than ``n`` unplayed artists gets
    fewer rows. Returns the number of rows.
    """
    from pyspark import cloudpickle
    from pyspark.sql import types as T

    from recsys_assets.engines import spark_tiles
    from recsys_assets.engines.spark_tiles import (
        factor_block,
        merge_tiles,
        rows_out,
        score_tile,
        user_block_arrays,
    )

    # Ship the tile helpers' code with each task, so executors need numpy but not this package.
    cloudpickle.register_pickle_by_value(spark_tiles)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    users = spark.read.parquet(f"{factors_uri}/users")
    artists = spark.read.parquet(f"{factors_uri}/artists")
    k = len(users.columns) - 1
    columns = ["id", *(f"f{i}" for i in range(k))]
    user_rows = users.select(*columns).rdd.map(lambda r: (r[0] // user_block, tuple(r)))
    played = (
        spark.read.parquet(played_uri)
        .select("user_id", "artist_id")
        .rdd.map(lambda r: (r[0] // user_block, (r[0], r[1])))
    )
    user_blocks = (
        user_rows.cogroup(played)
        .filter(lambda kv: len(kv[1][0]) > 0)
        .map(lambda kv: user_block_arrays(kv, k))
    )
    artist_blocks = (
        artists.select(*columns)
        .rdd.map(lambda r: (r[0] // artist_block, tuple(r)))
        .groupByKey()
        .mapValues(lambda rows: factor_block(rows, k))
    )
    tops = (
        user_blocks.cartesian(artist_blocks)
        .map(lambda pair: score_tile(pair, n))
        .reduceByKey(lambda a, b: merge_tiles(a, b, n))
        .flatMap(lambda kv: rows_out(kv[1]))
    )
    schema = T.StructType(
        [
            T.StructField("user_id", T.IntegerType(), False),
            T.StructField("rank", T.IntegerType(), False),
            T.StructField("artist_id", T.IntegerType(), False),
            T.StructField("score", T.FloatType(), False),
        ]
    )
    spark.createDataFrame(tops, schema).write.mode("overwrite").parquet(out_uri)
    return spark.read.parquet(out_uri).count()


def read_recommendations(uri: str, n_users: int, n: int) -> np.ndarray:
    """The ``(user_id, rank, artist_id)`` Parquet at ``uri`` as an (n_users, n) int64 array, -1 where a
    user has no artist at that rank (the layout ``core.metrics.evaluate_ranked_lists`` reads)."""
    cols = read_parquet(uri, "user_id, rank, artist_id")
    out = np.full((n_users, n), -1, dtype=np.int64)
    keep = cols["rank"] < n
    out[cols["user_id"][keep], cols["rank"][keep]] = cols["artist_id"][keep]
    return out


def ranking_metrics(
    spark: Any, recommendations_uri: str, test_uri: str, *, k: int, n_artists: int
) -> dict[str, float]:
    """Top-k metrics of the recommendation lists at ``recommendations_uri`` against the held-out pairs at
    ``test_uri`` (Parquet ``(user_id, artist_id, ...)``), with the definitions of ``core/metrics.py``:
    precision@k = Σ hits / Σ min(k, P_u) (pooled), recall, MAP, NDCG (means over users with a test
    pair; a user without recommendations counts with no hits) and coverage = distinct recommended
    artists of evaluated users / ``n_artists``. The lists must already exclude train pairs."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    test = spark.read.parquet(test_uri).select("user_id", "artist_id").distinct()
    recs = (
        spark.read.parquet(recommendations_uri)
        .filter(F.col("rank") < k)
        .select("user_id", "rank", "artist_id")
    )
    positives = test.groupBy("user_id").agg(F.count("*").alias("p"))
    hits = recs.join(test, ["user_id", "artist_id"]).withColumn(
        "hits_so_far", F.row_number().over(Window.partitionBy("user_id").orderBy("rank"))
    )
    per_user_hits = hits.groupBy("user_id").agg(
        F.count("*").alias("hits"),
        F.sum(F.col("hits_so_far") / (F.col("rank") + 1)).alias("ap_sum"),
        F.sum(1.0 / F.log2(F.col("rank") + 2)).alias("dcg"),
    )
    ideal = F.array(*(F.lit(sum(1.0 / math.log2(j + 2) for j in range(m))) for m in range(k + 1)))
    per_user = (
        positives.join(per_user_hits, "user_id", "left")
        .fillna(0.0, ["hits", "ap_sum", "dcg"])
        .withColumn("m", F.least(F.col("p"), F.lit(k)))
        .withColumn("idcg", F.element_at(ideal, F.col("m").cast("int") + 1))
    )
    row = per_user.agg(
        F.count("*").alias("n_users"),
        (F.sum("hits") / F.sum("m")).alias("precision"),
        F.avg(F.col("hits") / F.col("p")).alias("recall"),
        F.avg(F.col("ap_sum") / F.col("m")).alias("map"),
        F.avg(F.col("dcg") / F.col("idcg")).alias("ndcg"),
    ).first()
    covered = recs.join(positives.select("user_id"), "user_id").select("artist_id").distinct().count()
    return {
        "k": float(k),
        "n_users": float(row["n_users"]),
        "precision": float(row["precision"]),
        "recall": float(row["recall"]),
        "map": float(row["map"]),
        "ndcg": float(row["ndcg"]),
        "coverage": covered / n_artists,
    }
