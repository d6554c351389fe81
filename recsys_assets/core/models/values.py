"""Value scalings for the models that predict play counts (PMF, gravity MF), and the held-out pairs
their training schedules validate on.

Raw play counts span six orders of magnitude, so a squared-error model fits scaled values instead:

* ``log1p``: ``log(1 + plays)``;
* ``user_max``: ``plays / (the user's largest count in the matrix given)``, in (0, 1];
* ``none``: the counts as they are.

The scaling is the models' ``Model.value_transform``: the evaluation applies it to held-out values before
comparing them with ``FactorSet.predict``. ``user_max`` scales each row by the maximum of the rows it is
given, so held-out values are comparable only when their row maximum is the training row's.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

Scaling = Literal["log1p", "user_max", "none"]


def scale_values(matrix: sp.csr_matrix, scaling: Scaling) -> sp.csr_matrix:
    """A copy of ``matrix`` (users x items CSR, stored entries = play counts >= 0) with its stored values
    scaled (module docstring); float32, explicit zeros dropped first."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.eliminate_zeros()
    if scaling == "log1p":
        out.data = np.log1p(out.data.astype(np.float64)).astype(np.float32)
    elif scaling == "user_max":
        row_max = np.zeros(out.shape[0], dtype=np.float64)
        lengths = np.diff(out.indptr)
        nonempty = lengths > 0
        row_max[nonempty] = np.maximum.reduceat(out.data.astype(np.float64), out.indptr[:-1][nonempty])
        out.data = (out.data / np.repeat(row_max, lengths)).astype(np.float32)
    elif scaling != "none":
        raise ValueError(f"unknown scaling {scaling!r}; use log1p, user_max or none")
    return out


def observed_pairs(matrix: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users int32, items int32, values float32) of the stored entries, in CSR order."""
    users = np.repeat(np.arange(matrix.shape[0], dtype=np.int32), np.diff(matrix.indptr))
    return users, matrix.indices.astype(np.int32), matrix.data.astype(np.float32)


def validation_mask(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean mask choosing ``round(fraction * n)`` of ``n`` pairs uniformly without replacement."""
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(fraction * n)), replace=False)] = True
    return mask


def scaled_by_settings(matrix: sp.csr_matrix, settings: Any) -> sp.csr_matrix:
    """The values a model with a ``scaling`` setting predicts: :func:`scale_values` with
    ``settings.scaling`` (the ``value_transform`` of PMF and gravity MF)."""
    return scale_values(matrix, settings.scaling)
