"""The play matrix's weighting and summary."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.weighting import weight_user_items
from recsys_assets.settings import WeightingSettings


def matrix_summary(X: sp.csr_matrix) -> dict:
    """Shape, fill and empty rows / columns of a users x artists matrix."""
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
        alpha=weighting.alpha,
        scale=weighting.confidence_scale,
        # One epsilon per scheme that has one: the log scheme's own, or the confidence scheme's.
        epsilon=weighting.epsilon if weighting.scheme == "log" else weighting.confidence_epsilon,
    )
