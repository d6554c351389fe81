"""Latent semantic analysis: truncated SVD of the weighted user x artist matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import svds

from recsys_assets.core.threads import blas_threads


class LsaError(ValueError):
    """The matrix or the number of factors cannot give a truncated SVD."""


@dataclass
class LsaResult:
    """Factors of ``W ~= U diag(s) V^T``, stored so that ``user_factors @ item_factors.T`` rebuilds it.

    ``user_factors = U`` (float32, ``(n_users, k)``), ``item_factors = V diag(s)`` (float32,
    ``(n_items, k)``): item-item cosine then compares rows of ``V diag(s)``, whose Gram matrix is
    ``W^T W``, the classical LSA term similarity. ``singular_values`` is ``s`` in descending order.
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    singular_values: np.ndarray


def fit_lsa(weighted: sp.spmatrix, factors: int = 64, seed: int = 0, threads: int | None = None) -> LsaResult:
    """Truncated SVD of ``weighted`` (users x items) with ``factors`` components (ARPACK, seeded).

    Components come in descending order of singular value; each component's sign is fixed so that
    its largest-magnitude item loading is positive, so the same input and seed give the same factors.
    """
    if not sp.issparse(weighted):
        raise LsaError(f"expected a scipy sparse matrix, got {type(weighted).__name__}")
    W = sp.csr_matrix(weighted, dtype=np.float32)
    n_users, n_items = W.shape
    if not 0 < factors < min(n_users, n_items):
        raise LsaError(
            f"LSA factors must be between 1 and min(n_users, n_items) - 1 = {min(n_users, n_items) - 1}, got {factors}"
        )
    if W.nnz == 0:
        raise LsaError("the weighted matrix is empty: nothing to factorise")
    v0 = np.random.default_rng(seed).uniform(-1.0, 1.0, size=min(n_users, n_items)).astype(np.float32)
    with blas_threads(threads):
        U, s, Vt = svds(W, k=factors, v0=v0, solver="arpack")
    order = np.argsort(-s)
    U, s, V = U[:, order], s[order], Vt[order].T
    flip = np.sign(V[np.abs(V).argmax(axis=0), np.arange(factors)])
    flip[flip == 0] = 1.0
    U, V = U * flip, V * flip
    return LsaResult(
        user_factors=np.ascontiguousarray(U, dtype=np.float32),
        item_factors=np.ascontiguousarray(V * s, dtype=np.float32),
        singular_values=s.astype(np.float32),
    )
