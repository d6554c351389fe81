"""Matrix factorization with gravity regularisation, fit to scaled play counts (a registered model).

Loss, over the observed set Ω of the N x M users x artists matrix A (values scaled, see :mod:`.values`):

    L(U, V) = (1/|Ω|) sum_(i,j) in Ω (A_ij - U_i . V_j)^2                      observed MSE
            + λ_r [ (1/N) sum_i |U_i|^2 + (1/M) sum_j |V_j|^2 ]                 regularisation
            + λ_g (1/(N M)) sum_i sum_j (U_i . V_j)^2                          gravity

The gravity term pulls every prediction, observed or not, toward zero; it equals
``(1/(N M)) sum((U^T U) ∘ (V^T V))`` and costs O((N + M) f^2), not O(N M f).

Solvers (``solver``):

* ``"gd"``: full-batch gradient descent as the TensorFlow write-up ran it (both sides stepped from the
  same point), with the gradients

      dL/dU = -(2/|Ω|) R V + (2 λ_r / N) U + (2 λ_g / (N M)) U (V^T V)      (R = residuals A - U V^T on Ω)
      dL/dV = -(2/|Ω|) R^T U + (2 λ_r / M) V + (2 λ_g / (N M)) V (U^T U);

* ``"als"``: alternating minimisation. With V fixed, L is quadratic in each row U_i, minimised by

      (sum_{j in Ω_i} V_j V_j^T + (λ_r |Ω| / N) I + (λ_g |Ω| / (N M)) V^T V) U_i = sum_{j in Ω_i} A_ij V_j

  (the same shape as implicit ALS's normal equations, with V^T V scaled), solved by ``cg_steps``
  conjugate-gradient steps warm-started from the current row; then V given U alike.

Measured on HetRec (``bench/seed_models.py --part quality``, default settings, 2 threads): ``gd`` as the
write-up ran it (2,000 iterations at rate 20) reached loss 2.271 in 20.7 s, ``als`` 2.136 in 0.7 s
(15 iterations), hence the default. Per iteration the three loss components
are reported (``loss_components``) after the step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar, Literal

import numba
import numpy as np
import scipy.sparse as sp
from numba import prange

from recsys_assets.core.als import _permuted, _popularity_orders
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.models.values import Scaling, scale_values, scaled_by_settings
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Section, Seed
from recsys_assets.core.threads import numba_threads


@dataclass(frozen=True)
class GravitySettings(Section):
    """MF on the observed scaled play counts with L2 and gravity regularisation."""

    TABLE: ClassVar[str] = "gravity"

    # The write-up's settings: 35 dimensions, init std 0.05, λ_r = 0.1, λ_g = 1.0.
    factors: PositiveInt = 35
    regularization: NonNegativeFloat = 0.1
    gravity: NonNegativeFloat = 1.0
    init_std: PositiveFloat = 0.05
    solver: Literal["als", "gd"] = "als"
    # "gd" needs many more (the write-up ran 2000 at rate 20).
    iterations: PositiveInt = 15
    learning_rate: PositiveFloat = 20.0
    cg_steps: PositiveInt = 3
    scaling: Scaling = "log1p"
    seed: Seed = 0


# ---------------------------------------------------------------------------------------------------
# Kernels (one job each; rows in parallel, each row written by one thread: thread-count independent).


@numba.njit(cache=True, fastmath=True, parallel=True)
def residuals(indptr, indices, data, U, V, out):  # pragma: no cover
    """``out[p] = A_ij - U_i . V_j`` for every stored entry p = (i, j) of the CSR matrix."""
    for i in prange(indptr.shape[0] - 1):
        for p in range(indptr[i], indptr[i + 1]):
            j = indices[p]
            s = 0.0
            for k in range(U.shape[1]):
                s += U[i, k] * V[j, k]
            out[p] = data[p] - s


@numba.njit(cache=True, fastmath=True, parallel=True)
def sparse_times(indptr, indices, values, F, out):  # pragma: no cover
    """``out[r] = sum_p values[p] F[indices[p]]`` over row r's stored entries (sparse x dense)."""
    for r in prange(indptr.shape[0] - 1):
        for k in range(F.shape[1]):
            out[r, k] = 0.0
        for p in range(indptr[r], indptr[r + 1]):
            j, v = indices[p], values[p]
            for k in range(F.shape[1]):
                out[r, k] += v * F[j, k]


@numba.njit(cache=True, fastmath=True, inline="always")
def _row_product(indptr, indices, fixed, base, r, v, out):  # pragma: no cover
    """``out = (base + sum_j F_j F_j^T) v`` over row r's stored entries j (F = fixed)."""
    f = v.shape[0]
    for a in range(f):
        s = 0.0
        for b in range(f):
            s += base[a, b] * v[b]
        out[a] = s
    for p in range(indptr[r], indptr[r + 1]):
        j = indices[p]
        s = 0.0
        for k in range(f):
            s += fixed[j, k] * v[k]
        for k in range(f):
            out[k] += s * fixed[j, k]


@numba.njit(cache=True, fastmath=True, parallel=True)
def cg_rows(indptr, indices, data, fixed, base, X, steps):  # pragma: no cover
    """Warm-started CG on every row's system ``(base + sum_j F_j F_j^T) x = sum_j a_j F_j`` (F = fixed,
    j over the row's stored entries, a_j their values), ``steps`` steps, in place on ``X``."""
    f = X.shape[1]
    for r in prange(indptr.shape[0] - 1):
        x = X[r].astype(np.float64)
        res, d, ad = np.zeros(f), np.empty(f), np.empty(f)
        _row_product(indptr, indices, fixed, base, r, x, ad)
        for p in range(indptr[r], indptr[r + 1]):
            j = indices[p]
            for k in range(f):
                res[k] += data[p] * fixed[j, k]
        rs = 0.0
        for k in range(f):
            res[k] -= ad[k]
            d[k] = res[k]
            rs += res[k] * res[k]
        for _ in range(steps):
            if rs < 1e-20:
                break
            _row_product(indptr, indices, fixed, base, r, d, ad)
            dad = 0.0
            for k in range(f):
                dad += d[k] * ad[k]
            step = rs / dad
            new = 0.0
            for k in range(f):
                x[k] += step * d[k]
                res[k] -= step * ad[k]
                new += res[k] * res[k]
            for k in range(f):
                d[k] = res[k] + (new / rs) * d[k]
            rs = new
        for k in range(f):
            X[r, k] = x[k]


# ---------------------------------------------------------------------------------------------------
# The loss and its gradient.


@dataclass
class _Problem:
    """A (values-scaled) matrix in CSR and CSC with the map between their entry orders."""

    csr: sp.csr_matrix
    csc: sp.csr_matrix  # the transpose, as CSR (artists x users)
    to_csr: np.ndarray  # csc entry q holds the csr entry to_csr[q]

    @classmethod
    def of(cls, matrix: sp.csr_matrix) -> _Problem:
        csr = sp.csr_matrix(matrix, dtype=np.float64 if matrix.dtype == np.float64 else np.float32)
        csr.sort_indices()
        positions = sp.csr_matrix((np.arange(csr.nnz, dtype=np.float64), csr.indices, csr.indptr), csr.shape)
        t = positions.T.tocsr()
        t.sort_indices()
        csc = sp.csr_matrix((csr.data[t.data.astype(np.int64)], t.indices, t.indptr), t.shape)
        return cls(csr, csc, t.data.astype(np.int64))


def loss_parts(problem: _Problem, U, V, settings: GravitySettings, res=None) -> dict[str, float]:
    """The three loss components (module docstring) at (U, V)."""
    n, m = problem.csr.shape
    if res is None:
        res = np.empty(problem.csr.nnz, U.dtype)
        residuals(problem.csr.indptr, problem.csr.indices, problem.csr.data, U, V, res)
    g_u, g_v = U.T.astype(np.float64) @ U, V.T.astype(np.float64) @ V
    return {
        "observed_mse": float(np.square(res, dtype=np.float64).sum()) / max(1, problem.csr.nnz),
        "regularization": settings.regularization * (float(np.trace(g_u)) / n + float(np.trace(g_v)) / m),
        "gravity": settings.gravity * float((g_u * g_v).sum()) / (n * m),
    }


def gradients(
    problem: _Problem, U, V, settings: GravitySettings
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dL/dU, dL/dV, residuals) at (U, V), in U's dtype (module docstring)."""
    (n, m), omega = problem.csr.shape, max(1, problem.csr.nnz)
    c, t = problem.csr, problem.csc
    res = np.empty(c.nnz, U.dtype)
    residuals(c.indptr, c.indices, c.data, U, V, res)
    rv, rtu = np.empty_like(U), np.empty_like(V)
    sparse_times(c.indptr, c.indices, res, V, rv)
    sparse_times(t.indptr, t.indices, res[problem.to_csr], U, rtu)
    scale = U.dtype.type(2.0 * settings.gravity / (n * m))
    g_u = -2.0 / omega * rv + (2.0 * settings.regularization / n) * U + scale * (U @ (V.T @ V))
    g_v = -2.0 / omega * rtu + (2.0 * settings.regularization / m) * V + scale * (V @ (U.T @ U))
    return g_u.astype(U.dtype), g_v.astype(V.dtype), res


def _als_half(matrix: sp.csr_matrix, fixed, solved, ridge: float, gravity: float, steps: int) -> None:
    """Solve every row of ``solved`` given ``fixed`` (module docstring), in place."""
    base = ridge * np.eye(fixed.shape[1]) + gravity * (fixed.T.astype(np.float64) @ fixed)
    cg_rows(matrix.indptr, matrix.indices, matrix.data, fixed, base, solved, steps)


def fit(
    matrix: sp.csr_matrix, settings: GravitySettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """Gravity-regularised MF of the scaled ``matrix`` (users x artists play counts, CSR) with the
    chosen solver; ``loss`` per iteration (after its step) and its three ``loss_components``."""
    scaled = scale_values(matrix, settings.scaling)
    # Solve with users and artists numbered by decreasing popularity (cache locality, as the ALS fit);
    # the factors are drawn and returned in the caller's order.
    user_order, item_order = _popularity_orders(scaled)
    problem = _Problem.of(_permuted(scaled, user_order, item_order))
    n, m = problem.csr.shape
    omega = max(1, problem.csr.nnz)
    rng = np.random.default_rng(settings.seed)
    std = np.float32(settings.init_std)
    U = rng.standard_normal((n, settings.factors), dtype=np.float32) * std
    V = rng.standard_normal((m, settings.factors), dtype=np.float32) * std
    U, V = U[user_order], V[item_order]
    losses, seconds = [], []
    components: dict[str, list[float]] = {"observed_mse": [], "regularization": [], "gravity": []}
    rate = np.float32(settings.learning_rate)
    with numba_threads(threads):
        for iteration in range(settings.iterations):
            start = time.perf_counter()
            if settings.solver == "gd":
                g_u, g_v, _ = gradients(problem, U, V, settings)
                U -= rate * g_u
                V -= rate * g_v
            else:
                gravity = settings.gravity * omega / (n * m)
                _als_half(problem.csr, V, U, settings.regularization * omega / n, gravity, settings.cg_steps)
                _als_half(problem.csc, U, V, settings.regularization * omega / m, gravity, settings.cg_steps)
            seconds.append(time.perf_counter() - start)
            parts = loss_parts(problem, U, V, settings)
            for key, value in parts.items():
                components[key].append(value)
            losses.append(sum(parts.values()))
            if progress is not None:
                progress(iteration + 1, settings.iterations, losses[-1], seconds[-1])
    user_factors, item_factors = np.empty_like(U), np.empty_like(V)
    user_factors[user_order], item_factors[item_order] = U, V
    return FactorSet(
        model="gravity",
        user_factors=user_factors,
        item_factors=item_factors,
        loss=losses,
        seconds=seconds,
        loss_components=components,
    )


MODEL = Model(
    name="gravity",
    description="MF of scaled play counts with L2 and gravity regularisation (every prediction pulled "
    "toward zero); alternating CG or full-batch gradient descent.",
    settings=GravitySettings,
    fit=fit,
    input="plays",
    kinds=("numba",),
    predicts_values=True,
    value_transform=scaled_by_settings,
)
