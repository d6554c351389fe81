"""Matrices: the user x artist play matrix and its weighted form."""

import dagster as dg
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import data_version, reads_settings
from recsys_assets.assets.spark import spark_weighted_matrix_asset
from recsys_assets.core.loaders import read_play_matrix
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.pipeline.matrices import apply_weighting, matrix_summary
from recsys_assets.resources import warehouse_connection
from recsys_assets.settings import Settings, WeightingSettings


@reads_settings("play_matrix-1")
def play_matrix_asset(*, code_version: str) -> dg.AssetsDefinition:
    @dg.asset(
        deps=["raw_plays"],
        group_name="matrices",
        code_version=code_version,
        description="User x artist play counts as float32 CSR; row/column indices are the dense "
        "user_id/artist_id of the users and artists tables.",
    )
    def play_matrix(warehouse: DuckDBResource) -> dg.Output[sp.csr_matrix]:
        with warehouse_connection(warehouse) as conn:
            X = read_play_matrix(conn)
        return dg.Output(X, data_version=data_version(X), metadata=matrix_summary(X))

    return play_matrix


@reads_settings("weighted_matrix-2")
def weighted_matrix_asset(
    weighting: WeightingSettings, engine: EngineSettings, *, code_version: str
) -> dg.AssetsDefinition:
    """``engine``: with kind spark the weighting runs on Spark (:mod:`recsys_assets.assets.spark`)."""
    spec = {
        "name": "weighted_matrix",
        "group_name": "matrices",
        "code_version": code_version,
        "description": f"Play matrix weighted with {weighting.scheme} ({weighting.orientation} orientation); "
        "the matrix the ranking models factorise.",
    }
    if engine.kind == "spark":
        return spark_weighted_matrix_asset(spec, weighting, engine)

    @dg.asset(**spec)
    def weighted_matrix(play_matrix: sp.csr_matrix) -> dg.Output[sp.csr_matrix]:
        W = apply_weighting(play_matrix, weighting)
        metadata = matrix_summary(W) | {
            "scheme": weighting.scheme,
            "orientation": weighting.orientation,
            "value_min": float(W.data.min()) if W.nnz else 0.0,
            "value_max": float(W.data.max()) if W.nnz else 0.0,
        }
        return dg.Output(W, data_version=data_version(W), metadata=metadata)

    return weighted_matrix


def build_matrix_assets(settings: Settings) -> list:
    if settings.tuning.mode != "off":
        # Tuned models weight the play matrix as their tuning chose: nothing reads [weighting]'s matrix.
        return [play_matrix_asset()]
    return [play_matrix_asset(), weighted_matrix_asset(settings.weighting, settings.engine)]
