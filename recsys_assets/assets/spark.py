"""The assets whose heavy stage runs on Spark when ``[engine] kind = "spark"``: the weighted matrix, the
ALS fit, every model's recommendations and the ALS evaluation fit with its top-k metrics.

Each builder here makes the asset of the same name, inputs and output as its single-machine twin (in
``matrices``, ``factors``, ``answers``, ``evaluation``), which calls it with the code version it computed:
the rest of the graph, the storage and the catalog cannot tell the engines apart. The session comes from
the ``pyspark`` resource (``dagster_pyspark.LazyPySparkResource``, registered only for this engine) through
:func:`engines.spark.spark_session`, so a missing Java, pyspark or master fails in one line.
"""

from typing import Any

import dagster as dg
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import data_version, table_version
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import get_model
from recsys_assets.core.split import Split
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.engines.spark_pipeline import SparkStages
from recsys_assets.pipeline.answers import top_n_frame
from recsys_assets.pipeline.factors import ensure_finite
from recsys_assets.pipeline.matrices import matrix_summary
from recsys_assets.pipeline.warehouse import replace_table
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import check_model, fingerprint

# The one model Spark fits (MLlib's implicit ALS); the others fit here from the Spark-weighted matrix.
SPARK_MODEL = "als"


def spark_stages(pyspark: Any, engine: EngineSettings, home: str) -> SparkStages:
    """The Spark stages on the session of the ``pyspark`` resource, handing over under
    ``engine.handoff_uri(home)``."""
    from recsys_assets.engines.spark import spark_session

    return SparkStages(spark_session(engine, create=lambda: pyspark.spark_session), engine.handoff_uri(home))


def _fit_metadata(factors: FactorSet) -> dict[str, float]:
    """Spark's fit record (wall time, the mapped regParam and alpha) as metadata, taken out of the
    factor set's curves (which hold x/y series only)."""
    fit = factors.curves.pop("spark", {})
    return {f"spark_{name}": float(values[0]) for name, values in fit.items() if values}


def spark_weighted_matrix_asset(spec: dict, weighting: Any, engine: EngineSettings) -> dg.AssetsDefinition:
    """``weighted_matrix`` weighted on Spark from the warehouse's plays (exported as Parquet); ``spec``:
    the single-machine asset's decorator arguments."""

    @dg.asset(**spec | {"kinds": {"spark"}})
    def weighted_matrix(
        play_matrix: sp.csr_matrix,
        warehouse: DuckDBResource,
        store: RecsysStore,
        pyspark: dg.ResourceParam[Any],
    ) -> dg.Output[sp.csr_matrix]:
        stages = spark_stages(pyspark, engine, store.home)
        with warehouse_connection(warehouse) as conn:
            W = stages.weighted_matrix(conn, play_matrix.shape, weighting)
        metadata = matrix_summary(W) | {
            "scheme": weighting.scheme,
            "orientation": weighting.orientation,
            "value_min": float(W.data.min()) if W.nnz else 0.0,
            "value_max": float(W.data.max()) if W.nnz else 0.0,
            "engine": f"spark {engine.master}",
        }
        return dg.Output(W, data_version=data_version(W), metadata=metadata)

    return weighted_matrix


def spark_als_factors_asset(
    spec: dict,
    model_settings: Any,
    sources: tuple,
    engine: EngineSettings,
    where: str | None,
    output: Any,
) -> dg.AssetsDefinition:
    """``als_factors`` fitted by Spark MLlib's implicit ALS (settings mapped as ``engines.spark``
    documents); ``output``: ``factors.factor_output`` (validation, DuckDB tables, metadata)."""
    model = get_model(SPARK_MODEL)

    @dg.asset(**spec | {"kinds": {"spark", "duckdb"}})
    def als_factors(
        matrix: sp.csr_matrix,
        warehouse: DuckDBResource,
        store: RecsysStore,
        pyspark: dg.ResourceParam[Any],
    ) -> dg.Output[FactorSet]:
        check_model(model, model_settings, matrix.shape, where)
        factors = spark_stages(pyspark, engine, store.home).als_factors_of(matrix, model_settings)
        factors.settings_fingerprint = fingerprint(*sources, model_settings, engine.fingerprint_part())
        fit = _fit_metadata(factors)
        result = output(factors, warehouse)
        return dg.Output(result.value, data_version=result.data_version, metadata=result.metadata | fit)

    return als_factors


def spark_recommendations_asset(
    spec: dict, models: tuple[str, ...], n: int, engine: EngineSettings
) -> dg.AssetsDefinition:
    """``recommendations``: every model's top-``n`` unplayed artists per user, scored on Spark."""

    @dg.asset(**spec | {"kinds": {"spark", "duckdb"}})
    def recommendations(
        warehouse: DuckDBResource,
        store: RecsysStore,
        pyspark: dg.ResourceParam[Any],
        play_matrix: sp.csr_matrix,
        **inputs,
    ) -> dg.MaterializeResult:
        stages = spark_stages(pyspark, engine, store.home)
        frames = []
        for m in models:
            ids, scores = stages.recommendations(inputs[f"{m}_factors"], play_matrix, n)
            frames.append(top_n_frame(m, ids, scores, "user_id", "artist_id", models=models))
        table = pd.concat(frames, ignore_index=True)
        del frames
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "recommendations", table)
            version = table_version(conn, "recommendations")
        return dg.MaterializeResult(
            data_version=version,
            metadata={"dagster/row_count": len(table), "engine": f"spark {engine.master}"},
        )

    return recommendations


def spark_eval_als_asset(
    spec: dict,
    model_settings: Any,
    sources: tuple,
    weighting: Any,
    k: int,
    engine: EngineSettings,
    where: str | None,
) -> dg.AssetsDefinition:
    """``eval_als_factors``: the train split weighted and ALS refitted on Spark, with Spark's top-``k``
    metrics of that fit (train pairs excluded) in the metadata as ``spark_<metric>``."""
    model = get_model(SPARK_MODEL)

    @dg.asset(**spec | {"kinds": {"spark"}})
    def eval_als_factors(
        context: dg.AssetExecutionContext,
        train_test_split: Split,
        store: RecsysStore,
        pyspark: dg.ResourceParam[Any],
    ) -> dg.Output[FactorSet]:
        split = train_test_split
        check_model(model, model_settings, split.train.shape, where)
        stages = spark_stages(pyspark, engine, store.home)
        factors, metrics = stages.evaluation(split.train, split.test, weighting, model_settings, k)
        factors.settings_fingerprint = fingerprint(*sources, model_settings, engine.fingerprint_part())
        ensure_finite(factors)
        context.log.info(f"Spark ALS on train: precision@{k} {metrics['precision']:.4f}")
        metadata = _fit_metadata(factors) | {
            f"spark_{name}": value for name, value in metrics.items() if name != "k"
        }
        return dg.Output(
            factors,
            data_version=data_version(factors.user_factors, factors.item_factors),
            metadata=metadata | {"k": k},
        )

    return eval_als_factors
