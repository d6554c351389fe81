"""Factor sets: one asset per enabled model of the registry, as an artifact and DuckDB tables."""

import time
from typing import Any

import dagster as dg
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import data_version, reads_settings
from recsys_assets.assets._tables import other_tables, table_metadata
from recsys_assets.assets.spark import SPARK_MODEL, spark_als_factors_asset
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import get_model
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.pipeline.factors import ensure_finite, factor_summary, fit_model
from recsys_assets.pipeline.tuning import TunedSettings, tuned_input
from recsys_assets.pipeline.warehouse import write_factor_tables
from recsys_assets.resources import warehouse_connection
from recsys_assets.settings import DataSettings, RuntimeSettings, Settings, WeightingSettings, check_model

# The asset each model input names.
INPUT_ASSETS = {"weighted": "weighted_matrix", "plays": "play_matrix"}


def factor_output(factors: FactorSet, warehouse: DuckDBResource, seconds: float | None = None) -> dg.Output:
    """Validate a fitted factor set, write its DuckDB tables, and wrap it as the asset's output with a
    content-hash data version (validation first: non-finite factors never reach the tables). The tables
    carry that version in the ledger, so a run killed before its output is recorded is detected."""
    ensure_finite(factors)
    version = data_version(factors.user_factors, factors.item_factors)
    with warehouse_connection(warehouse) as conn:
        write_factor_tables(conn, factors, version.value)
        mine = ("model = ?", [factors.model])
        tables = table_metadata(
            conn, "artist_factors", *mine, lineage={"artist_id": [("raw_plays", "artist_id")]}
        ) | other_tables(conn, ["user_factors"], *mine)
    values, texts = factor_summary(factors)
    metadata = tables | values | {name: dg.MetadataValue.md(text) for name, text in texts.items()}
    if seconds is not None:
        metadata["seconds"] = round(seconds, 3)
    return dg.Output(factors, data_version=version, metadata=metadata)


def provenance(settings: Settings, name: str) -> tuple:
    """The settings besides the model's own that shape a model's input: the data, and the weighting
    for a model of the weighted matrix."""
    weighted = get_model(name).input == "weighted"
    return (settings.data, settings.weighting) if weighted else (settings.data,)


@reads_settings("factors-2")
def factor_asset(
    name: str,
    model_settings: Any,
    sources: tuple[DataSettings | WeightingSettings, ...],
    runtime: RuntimeSettings,
    *,
    engine: EngineSettings | None = None,
    where: str | None = None,
    code_version: str,
) -> dg.AssetsDefinition:
    """The ``{name}_factors`` asset: ``model_settings`` is the model's section, ``sources`` its
    :func:`provenance`, ``where`` the settings file (for messages); ``engine`` only for the model Spark
    can fit (``als``), which then fits on Spark with kind spark (:mod:`recsys_assets.assets.spark`)."""
    model = get_model(name)
    spec = {
        "name": f"{name}_factors",
        "ins": {"matrix": dg.AssetIn(INPUT_ASSETS[model.input])},
        "group_name": "factors",
        "kinds": {*model.kinds, "duckdb"},
        "code_version": code_version,
        "description": f"{model.description} Also in DuckDB: artist_factors / user_factors.",
    }
    if engine is not None and engine.kind == "spark":
        return spark_als_factors_asset(spec, model_settings, sources, engine, where, factor_output)

    @dg.asset(**spec)
    def _factors(
        context: dg.AssetExecutionContext, matrix: sp.csr_matrix, warehouse: DuckDBResource
    ) -> dg.Output[FactorSet]:
        started = time.perf_counter()
        check_model(model, model_settings, matrix.shape, where)
        factors = fit_model(
            model, matrix, model_settings, runtime.threads, log=context.log.info, provenance=sources
        )
        return factor_output(factors, warehouse, time.perf_counter() - started)

    return _factors


@reads_settings("tuned_factors-1")
def tuned_factor_asset(
    name: str, data: DataSettings, runtime: RuntimeSettings, *, code_version: str
) -> dg.AssetsDefinition:
    """The ``{name}_factors`` asset under ``[tuning]``: fitted with the settings ``{name}_tuning`` chose,
    on the play matrix weighted as it chose (so a new best re-fits, the same best changes nothing)."""
    model = get_model(name)

    @dg.asset(
        name=f"{name}_factors",
        ins={"plays": dg.AssetIn("play_matrix"), "tuned": dg.AssetIn(f"{name}_tuning")},
        group_name="factors",
        kinds={*model.kinds, "duckdb"},
        code_version=code_version,
        description=f"{model.description} Settings and weighting from {name}_tuning. Also in DuckDB: "
        "artist_factors / user_factors.",
    )
    def _factors(
        context: dg.AssetExecutionContext,
        plays: sp.csr_matrix,
        tuned: TunedSettings,
        warehouse: DuckDBResource,
    ) -> dg.Output[FactorSet]:
        section = tuned.section(model.settings)
        matrix = tuned_input(model, plays, tuned)
        check_model(model, section, matrix.shape)
        factors = fit_model(
            model, matrix, section, runtime.threads, log=context.log.info, provenance=(data, tuned.document())
        )
        return factor_output(factors, warehouse)

    return _factors


def build_factor_assets(settings: Settings) -> list:
    if settings.tuning.mode != "off":
        return [
            tuned_factor_asset(m.name, settings.data, settings.runtime) for m in settings.enabled_models()
        ]
    return [
        factor_asset(
            model.name,
            settings.model_settings(model.name),
            provenance(settings, model.name),
            settings.runtime,
            where=settings.source_file,
            **({"engine": settings.engine} if model.name == SPARK_MODEL else {}),
        )
        for model in settings.enabled_models()
    ]
