"""Matrices: the user x artist play matrix and its weighted form."""

import dagster as dg
import numpy as np
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, data_version
from recsys_assets.core.loaders import read_play_matrix
from recsys_assets.core.weighting import weight_user_items
from recsys_assets.resources import warehouse_connection
from recsys_assets.settings import Settings, WeightingSettings


def _matrix_metadata(X: sp.csr_matrix) -> dict:
    n_users, n_items = X.shape
    return {
        "users": n_users,
        "artists": n_items,
        "nnz": int(X.nnz),
        "density": float(X.nnz / max(n_users * n_items, 1)),
        "empty_users": int(np.sum(np.diff(X.indptr) == 0)),
        "empty_artists": int(n_items - np.unique(X.indices).size),
    }


def apply_weighting(X: sp.csr_matrix, weighting: WeightingSettings) -> sp.csr_matrix:
    """Weight a user x artist play matrix as ``[weighting]`` says (used for the full and the train matrix)."""
    return weight_user_items(
        X,
        weighting.scheme,
        weighting.orientation,
        k1=weighting.k1,
        b=weighting.b,
        tf=weighting.tf,
        alpha=weighting.confidence_alpha,
        scale=weighting.confidence_scale,
        epsilon=weighting.confidence_epsilon,
    )


def build_matrix_assets(settings: Settings) -> list:
    @dg.asset(
        deps=["raw_plays"],
        group_name="matrices",
        code_version=code_version("play_matrix-1"),
        description="User x artist play counts as float32 CSR; row/column indices are the dense "
        "user_id/artist_id of the users and artists tables.",
    )
    def play_matrix(warehouse: DuckDBResource) -> dg.Output[sp.csr_matrix]:
        with warehouse_connection(warehouse) as conn:
            X = read_play_matrix(conn)
        return dg.Output(X, data_version=data_version(X), metadata=_matrix_metadata(X))

    weighting = settings.weighting

    @dg.asset(
        group_name="matrices",
        code_version=code_version("weighted_matrix-1", weighting),
        description=f"Play matrix weighted with {weighting.scheme} ({weighting.orientation} orientation); "
        "the matrix the models factorise.",
    )
    def weighted_matrix(play_matrix: sp.csr_matrix) -> dg.Output[sp.csr_matrix]:
        W = apply_weighting(play_matrix, weighting)
        metadata = _matrix_metadata(W) | {
            "scheme": weighting.scheme,
            "orientation": weighting.orientation,
            "value_min": float(W.data.min()) if W.nnz else 0.0,
            "value_max": float(W.data.max()) if W.nnz else 0.0,
        }
        return dg.Output(W, data_version=data_version(W), metadata=metadata)

    return [play_matrix, weighted_matrix]
