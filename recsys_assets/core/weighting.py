"""Weighting schemes for a sparse play-count matrix.

Every function takes a CSR matrix ``X`` of non-negative play counts (rows are "documents",
columns are "terms" in the text-retrieval analogy) and returns a new float32 CSR matrix with the
same sparsity pattern: only stored values change, nothing is added or dropped.

Which axis is the document matters for BM25 and TF-IDF. On HetRec Last.fm-2k, weighting the
artist x user orientation (rows = artists) gave implicit's ALS p@10 0.165 against 0.154 for
user x artist (``shared/PERF-NOTES.md``); :func:`weight_user_items` applies a scheme in either
orientation and always returns the user x artist matrix.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.sparse import canonical_csr

Scheme = Literal["raw", "bm25", "tfidf", "confidence", "log"]
Orientation = Literal["artist_user", "user_artist"]


class WeightingError(ValueError):
    """The matrix or a weighting parameter is not usable."""


def _checked_csr(X: sp.spmatrix) -> sp.csr_matrix:
    if not sp.issparse(X):
        raise WeightingError(f"expected a scipy sparse matrix, got {type(X).__name__}")
    X = canonical_csr(X, dtype=np.float32, copy=True)
    if X.nnz and (not np.all(np.isfinite(X.data)) or X.data.min() < 0):
        raise WeightingError("play counts must be finite and non-negative")
    return X


def _row_of_each_value(X: sp.csr_matrix) -> np.ndarray:
    return np.repeat(np.arange(X.shape[0], dtype=np.int64), np.diff(X.indptr))


def idf(X: sp.csr_matrix) -> np.ndarray:
    """Inverse document frequency of each column, float64 of shape ``(n_cols,)``.

    ``idf_j = log(N) - log(1 + df_j)`` with ``N`` the number of rows and ``df_j`` the number of rows
    in which column ``j`` is stored (the definition ``implicit`` uses, so weights are comparable).
    Clipped at 0: a column present in (almost) every row carries no information, never a negative
    weight.
    """
    n_rows = X.shape[0]
    df = np.bincount(X.indices, minlength=X.shape[1]).astype(np.float64)
    return np.maximum(np.log(max(n_rows, 1)) - np.log1p(df), 0.0)


def bm25_weight(X: sp.spmatrix, k1: float = 100.0, b: float = 0.8) -> sp.csr_matrix:
    """Okapi BM25 weighting, rows as documents.

    ``w_ij = x_ij (k1 + 1) / (x_ij + k1 ((1 - b) + b L_i / mean(L))) * idf_j`` where ``L_i`` is the
    sum of row ``i`` and ``idf`` is :func:`idf`. ``k1 >= 0`` saturates large counts; ``b`` in
    ``[0, 1]`` sets how much long rows are normalised. Returns float32 CSR, same pattern as ``X``.
    """
    if k1 < 0:
        raise WeightingError(f"BM25 k1 must be >= 0, got {k1}")
    if not 0.0 <= b <= 1.0:
        raise WeightingError(f"BM25 b must be in [0, 1], got {b}")
    X = _checked_csr(X)
    if X.nnz == 0:
        return X
    row_len = np.asarray(X.sum(axis=1), dtype=np.float64).ravel()
    mean_len = row_len.mean() if row_len.mean() > 0 else 1.0
    length_norm = (1.0 - b) + b * row_len / mean_len
    rows = _row_of_each_value(X)
    data = X.data.astype(np.float64)
    weighted = data * (k1 + 1.0) / (k1 * length_norm[rows] + data) * idf(X)[X.indices]
    X.data = weighted.astype(np.float32)
    return X


def tfidf_weight(X: sp.spmatrix, tf: Literal["sqrt", "log", "raw"] = "sqrt") -> sp.csr_matrix:
    """TF-IDF weighting, rows as documents: ``w_ij = tf(x_ij) * idf_j``.

    ``tf`` is ``sqrt(x)`` (default, damps heavy listeners), ``log(1 + x)`` or ``x``; ``idf`` is
    :func:`idf`. Returns float32 CSR, same pattern as ``X``.
    """
    transforms = {"sqrt": np.sqrt, "log": np.log1p, "raw": lambda v: v}
    if tf not in transforms:
        raise WeightingError(f"tf must be one of {sorted(transforms)}, got {tf!r}")
    X = _checked_csr(X)
    if X.nnz == 0:
        return X
    X.data = (transforms[tf](X.data.astype(np.float64)) * idf(X)[X.indices]).astype(np.float32)
    return X


def confidence_weight(
    X: sp.spmatrix, alpha: float = 40.0, scale: Literal["linear", "log"] = "linear", epsilon: float = 1.0
) -> sp.csr_matrix:
    """Confidence of Hu, Koren & Volinsky (2008): ``c_ij = 1 + alpha * f(x_ij)``.

    ``f(x) = x`` (linear) or ``f(x) = log(1 + x / epsilon)`` (log). Orientation does not matter
    (the formula is element-wise). Returns float32 CSR, same pattern as ``X``.
    """
    if alpha < 0:
        raise WeightingError(f"confidence alpha must be >= 0, got {alpha}")
    if scale not in ("linear", "log"):
        raise WeightingError(f"confidence scale must be 'linear' or 'log', got {scale!r}")
    if epsilon <= 0:
        raise WeightingError(f"confidence epsilon must be > 0, got {epsilon}")
    X = _checked_csr(X)
    data = X.data.astype(np.float64)
    f = data if scale == "linear" else np.log1p(data / epsilon)
    X.data = (1.0 + alpha * f).astype(np.float32)
    return X


def log_weight(X: sp.spmatrix, epsilon: float = 1.0) -> sp.csr_matrix:
    """Log scaling of play counts: ``w_ij = log(1 + x_ij / epsilon)``.

    Damps heavy listening without an IDF term; ``epsilon > 0`` sets where counts start to be compressed
    (counts far below ``epsilon`` stay about ``x / epsilon``). Element-wise, so orientation does not
    matter. Returns float32 CSR, same pattern as ``X``.
    """
    if not (np.isfinite(epsilon) and epsilon > 0):
        raise WeightingError(f"log epsilon must be a finite number > 0, got {epsilon}")
    X = _checked_csr(X)
    X.data = np.log1p(X.data.astype(np.float64) / epsilon).astype(np.float32)
    return X


def weight_user_items(
    user_items: sp.spmatrix,
    scheme: Scheme = "bm25",
    orientation: Orientation = "artist_user",
    *,
    k1: float = 100.0,
    b: float = 0.8,
    tf: Literal["sqrt", "log", "raw"] = "sqrt",
    alpha: float = 40.0,
    scale: Literal["linear", "log"] = "linear",
    epsilon: float = 1.0,
) -> sp.csr_matrix:
    """Weight a user x artist play matrix with ``scheme`` and return the user x artist result.

    ``orientation="artist_user"`` treats artists as the documents (the matrix is transposed,
    weighted, transposed back); ``"user_artist"`` treats users as the documents. ``raw`` returns the
    counts as float32; ``log`` is :func:`log_weight` with ``epsilon`` (element-wise, like ``confidence``,
    so orientation does not matter). Shapes and sparsity pattern are preserved.
    """
    if orientation not in ("artist_user", "user_artist"):
        raise WeightingError(f"orientation must be 'artist_user' or 'user_artist', got {orientation!r}")
    X = _checked_csr(user_items)
    if scheme == "raw":
        return X
    if scheme == "confidence":
        return confidence_weight(X, alpha=alpha, scale=scale, epsilon=epsilon)
    if scheme == "log":
        return log_weight(X, epsilon=epsilon)
    if scheme == "bm25":
        weigh = lambda M: bm25_weight(M, k1=k1, b=b)  # noqa: E731
    elif scheme == "tfidf":
        weigh = lambda M: tfidf_weight(M, tf=tf)  # noqa: E731
    else:
        raise WeightingError(f"unknown weighting scheme {scheme!r}; use raw, bm25, tfidf, confidence or log")
    if orientation == "user_artist":
        return weigh(X)
    weighted = weigh(X.T.tocsr()).T.tocsr()
    weighted.sort_indices()
    return weighted
