"""Tests for recsys_assets.core.als: exactness against dense references, agreement with implicit."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.als import (
    AlsInputError,
    AlsNumericalError,
    _gram,
    als_loss,
    fit_als,
    solve_rows,
)
from recsys_assets.core.threads import numba_threads
from tests.conftest import HETREC_DIR

HETREC = HETREC_DIR / "user_artists.dat"


def random_confidence(
    n_rows: int = 40, n_cols: int = 30, density: float = 0.15, seed: int = 0
) -> sp.csr_matrix:
    """Random users x items confidences in [1, 41) with an empty row (3) and an empty column (5)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_rows, n_cols)) < density, 1.0 + 40.0 * rng.random((n_rows, n_cols)), 0.0)
    dense[3, :] = 0.0
    dense[:, 5] = 0.0
    return sp.csr_matrix(dense.astype(np.float32))


def dense_row_solution(confidence: sp.csr_matrix, fixed: np.ndarray, regularization: float) -> np.ndarray:
    """Exact ALS half-step in float64 from the dense definition, row by row with np.linalg.solve."""
    conf = confidence.toarray().astype(np.float64)
    observed = conf > 0
    c = np.where(observed, conf, 1.0)
    p = observed.astype(np.float64)
    y = fixed.astype(np.float64)
    out = np.empty((conf.shape[0], y.shape[1]))
    for u in range(conf.shape[0]):
        a = y.T @ (c[u, :, None] * y) + regularization * np.eye(y.shape[1])
        out[u] = np.linalg.solve(a, y.T @ (c[u] * p[u]))
    return out


def dense_loss(confidence: sp.csr_matrix, x: np.ndarray, y: np.ndarray, regularization: float) -> float:
    """implicit's normalised loss from its definition, in float64 over all dense pairs."""
    conf = confidence.toarray().astype(np.float64)
    observed = conf > 0
    c = np.where(observed, conf, 1.0)
    pred = x.astype(np.float64) @ y.astype(np.float64).T
    norms = np.square(x, dtype=np.float64).sum() + np.square(y, dtype=np.float64).sum()
    total = (c * (observed - pred) ** 2).sum() + regularization * norms
    return float(total / c.sum())


EPS32 = float(np.finfo(np.float32).eps)
EPS64 = float(np.finfo(np.float64).eps)


def row_systems(confidence: sp.csr_matrix, fixed: np.ndarray, regularization: float) -> np.ndarray:
    """Every row's normal-equation matrix ``A_u = F^T C_u F + lambda I`` in float64, ``(rows, f, f)``."""
    conf = confidence.toarray().astype(np.float64)
    c = np.where(conf > 0, conf, 1.0)
    y = fixed.astype(np.float64)
    return np.einsum("ik,ui,il->ukl", y, c, y) + regularization * np.eye(y.shape[1])


def float32_solve_tolerance(
    confidence: sp.csr_matrix, fixed: np.ndarray, regularization: float, solution: np.ndarray, passes: int
) -> np.ndarray:
    """Per-row bound on how far a float32 solve of the row systems may land from exact arithmetic.

    First-order error analysis: every quantity a float32 solver forms is a sum of at most
    ``n_u = n_cols + nnz_u + f`` products (a Gram entry sums ``n_cols``, a matrix-vector product
    ``f + nnz_u``). Rounding errors of independent operations do not all add up the same way, so a sum of
    ``n`` terms carries a relative error below ``sqrt(n) * eps32`` except with negligible probability
    (Higham & Mary 2019, probabilistic rounding error analysis; the worst case ``n * eps32`` is ~10x
    looser here and would not tell 2 CG steps from 3 at f = 64). A relative perturbation ``d`` of
    ``A_u`` or ``b_u`` moves the solution by at most ``kappa(A_u) * d`` relative, and each of the
    ``passes`` times the solver re-forms a product with ``A_u`` (CG steps; 1 for a direct solve) adds
    such an error. Returns ``passes * kappa_u * sqrt(n_u) * eps32 * |x_u|`` (max-norm), shape ``(rows,)``;
    zero for rows without stored values (their solution is exactly 0).
    """
    kappa = np.linalg.cond(row_systems(confidence, fixed, regularization))
    n_terms = confidence.shape[1] + np.diff(confidence.indptr) + fixed.shape[1]
    return passes * kappa * np.sqrt(n_terms) * EPS32 * np.abs(solution).max(axis=1)


def assert_rows_within(got: np.ndarray, expected: np.ndarray, bound: np.ndarray) -> None:
    """Every row's max-norm difference is at most ``bound`` (per row); names the worst row otherwise."""
    error = np.abs(got.astype(np.float64) - expected).max(axis=1)
    ratio = np.divide(error, bound, out=np.where(error > 0, np.inf, 0.0), where=bound > 0)
    worst = int(ratio.argmax())
    assert ratio[worst] <= 1.0, f"row {worst}: error {error[worst]:.3g} > bound {bound[worst]:.3g}"


@pytest.fixture(scope="module")
def problem() -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(7)
    confidence = random_confidence()
    fixed = rng.normal(0.0, 0.3, size=(confidence.shape[1], 8)).astype(np.float32)
    current = rng.normal(0.0, 0.3, size=(confidence.shape[0], 8)).astype(np.float32)
    return confidence, fixed, current


def test_cholesky_matches_dense_normal_equations(problem):
    confidence, fixed, current = problem
    expected = dense_row_solution(confidence, fixed, 0.1)
    got = solve_rows(confidence, fixed, current, 0.1, solver="cholesky", threads=2)
    assert got.dtype == np.float32 and got.shape == current.shape
    # The exact path solves in float64 from the same float32 inputs and rounds once to float32: at most
    # half an ulp of each element, plus the float64 solves' own error (kappa * n * eps64, numpy's and ours).
    kappa = np.linalg.cond(row_systems(confidence, fixed, 0.1))
    n_terms = confidence.shape[1] + np.diff(confidence.indptr) + fixed.shape[1]
    float64_error = kappa * n_terms * EPS64 * np.abs(expected).max(axis=1)
    assert np.all(np.abs(got - expected) <= 0.5 * EPS32 * np.abs(expected) + float64_error[:, None])


def test_cg_error_shrinks_with_more_steps(problem):
    confidence, fixed, current = problem
    exact = dense_row_solution(confidence, fixed, 0.1)
    errors = [
        np.abs(solve_rows(confidence, fixed, current, 0.1, cg_steps=steps) - exact).max()
        for steps in (1, 2, 4, 8, 16)
    ]
    assert errors == sorted(errors, reverse=True)
    # f = 8 steps would solve the 8-dimensional system in exact arithmetic; float32 needs a few more,
    # and then stops at its rounding floor.
    final = solve_rows(confidence, fixed, current, 0.1, cg_steps=16)
    assert_rows_within(final, exact, float32_solve_tolerance(confidence, fixed, 0.1, exact, passes=16))


def test_cg_warm_start_converges_over_repeated_half_steps(problem):
    confidence, fixed, current = problem
    exact = dense_row_solution(confidence, fixed, 0.1)
    conf = confidence.toarray().astype(np.float64)
    c = np.where(conf > 0, conf, 1.0)
    y = fixed.astype(np.float64)

    def a_norm_error(x: np.ndarray) -> float:
        """sum_u e_u^T A_u e_u with e = x - exact: the quantity every CG step decreases."""
        e = x - exact
        return float(sum(e[u] @ (y.T @ (c[u, :, None] * y) + 0.1 * np.eye(8)) @ e[u] for u in range(len(e))))

    x = current
    errors = [a_norm_error(x)]
    for _ in range(6):
        x = solve_rows(confidence, fixed, x, 0.1, cg_steps=1)
        errors.append(a_norm_error(x))
    assert errors == sorted(errors, reverse=True) and errors[-1] < 0.5 * errors[0]


def reference_cg(
    confidence: sp.csr_matrix, fixed: np.ndarray, current: np.ndarray, regularization: float, steps: int
) -> np.ndarray:
    """Textbook CG in float64 on each row's dense normal equations, warm-started from ``current``."""
    conf = confidence.toarray().astype(np.float64)
    y = fixed.astype(np.float64)
    gram = y.T @ y + regularization * np.eye(y.shape[1])
    out = current.astype(np.float64)
    for u in range(conf.shape[0]):
        observed = conf[u] > 0
        if not observed.any():
            out[u] = 0.0
            continue
        yo, co = y[observed], conf[u, observed]
        a = gram + yo.T @ ((co - 1.0)[:, None] * yo)
        x = out[u]
        r = yo.T @ co - a @ x
        p = r.copy()
        rs = r @ r
        for _ in range(steps):
            ap = a @ p
            alpha = rs / (p @ ap)
            x += alpha * p
            r -= alpha * ap
            rs_new = r @ r
            p = r + (rs_new / rs) * p
            rs = rs_new
    return out


# 64 is compiled with the width as a constant (a separate kernel): check it as well as a generic width.
@pytest.mark.parametrize("factors", [8, 64])
def test_cg_steps_match_reference_cg(factors):
    rng = np.random.default_rng(factors)
    confidence = random_confidence(n_rows=60, n_cols=90, density=0.3, seed=factors)
    fixed = rng.normal(0.0, 0.3, size=(confidence.shape[1], factors)).astype(np.float32)
    current = rng.normal(0.0, 0.3, size=(confidence.shape[0], factors)).astype(np.float32)
    expected = reference_cg(confidence, fixed, current, 0.1, steps=3)
    got = solve_rows(confidence, fixed, current, 0.1, cg_steps=3, threads=2)
    bound = float32_solve_tolerance(confidence, fixed, 0.1, expected, passes=3)
    assert_rows_within(got, expected, bound)
    np.testing.assert_array_equal(got[3], 0.0)
    # The bound is tight enough to tell the steps apart: every row moves by more in its third step.
    two_steps = reference_cg(confidence, fixed, current, 0.1, steps=2)
    moved = np.abs(two_steps - expected).max(axis=1)
    assert np.all(moved[bound > 0] > 10 * bound[bound > 0])


def test_solve_rows_leaves_current_untouched(problem):
    confidence, fixed, current = problem
    before = current.copy()
    solve_rows(confidence, fixed, current, 0.1)
    np.testing.assert_array_equal(current, before)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_loss_decreases_over_iterations(solver):
    confidence = random_confidence(seed=1)
    result = fit_als(confidence, factors=6, regularization=0.05, iterations=8, solver=solver, seed=3)
    assert len(result.loss) == 8 and len(result.seconds) == 8
    assert all(later < earlier for earlier, later in zip(result.loss, result.loss[1:], strict=False))


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_empty_rows_and_columns_get_zero_vectors(solver):
    confidence = random_confidence(seed=2)
    result = fit_als(confidence, factors=5, iterations=3, solver=solver, seed=0)
    assert np.all(np.isfinite(result.user_factors)) and np.all(np.isfinite(result.item_factors))
    np.testing.assert_array_equal(result.user_factors[3], 0.0)
    np.testing.assert_array_equal(result.item_factors[5], 0.0)
    assert np.abs(result.user_factors[4]).sum() > 0 and np.abs(result.item_factors[4]).sum() > 0


def test_cg_zero_residual_and_zero_curvature_give_no_nan(problem):
    confidence, _, current = problem
    zeros_fixed = np.zeros((confidence.shape[1], current.shape[1]), dtype=np.float32)
    # Residual exactly zero: nothing to solve, x stays 0.
    got = solve_rows(confidence, zeros_fixed, np.zeros_like(current), 0.1)
    np.testing.assert_array_equal(got, 0.0)
    # lambda = 0 and all-zero fixed factors: the CG curvature p.Ap is zero.
    got = solve_rows(confidence, zeros_fixed, current, 0.0)
    assert np.all(np.isfinite(got))


def test_cholesky_reports_singular_system(problem):
    confidence, _, current = problem
    zeros_fixed = np.zeros((confidence.shape[1], current.shape[1]), dtype=np.float32)
    with pytest.raises(AlsNumericalError, match="regularization > 0"):
        solve_rows(confidence, zeros_fixed, current, 0.0, solver="cholesky")


@pytest.mark.parametrize("factors", [16, 64])
def test_same_seed_same_factors_for_any_thread_count(factors):
    confidence = random_confidence(n_rows=300, n_cols=200, density=0.05, seed=4)
    one = fit_als(confidence, factors=factors, iterations=3, seed=11, threads=1)
    two = fit_als(confidence, factors=factors, iterations=3, seed=11, threads=2)
    again = fit_als(confidence, factors=factors, iterations=3, seed=11, threads=2)
    other = fit_als(confidence, factors=factors, iterations=3, seed=12, threads=2)
    np.testing.assert_array_equal(one.user_factors, two.user_factors)
    np.testing.assert_array_equal(one.item_factors, two.item_factors)
    np.testing.assert_array_equal(two.item_factors, again.item_factors)
    assert one.loss == two.loss
    assert not np.array_equal(two.item_factors, other.item_factors)


def test_loss_matches_dense_definition(problem):
    confidence, fixed, current = problem
    expected = dense_loss(confidence, current, fixed, 0.3)
    # Products of float32 factors are exact in float64 and every sum is float64: both sides carry at most
    # n * eps64 relative error with n = 1200 pairs (3e-13).
    assert als_loss(confidence, current, fixed, 0.3) == pytest.approx(expected, rel=1e-11)


def test_warm_start_and_callback():
    confidence = random_confidence(seed=5)
    rng = np.random.default_rng(0)
    users0 = rng.random((confidence.shape[0], 4), dtype=np.float32)
    items0 = rng.random((confidence.shape[1], 4), dtype=np.float32)
    untouched = fit_als(confidence, factors=4, iterations=0, user_factors=users0, item_factors=items0)
    np.testing.assert_array_equal(untouched.user_factors, users0)
    assert untouched.user_factors is not users0 and untouched.loss == []

    calls: list[tuple[int, float | None, float]] = []
    fitted = fit_als(
        confidence,
        factors=4,
        iterations=3,
        user_factors=users0,
        item_factors=items0,
        callback=lambda *a: calls.append(a),
    )
    assert [c[0] for c in calls] == [0, 1, 2] and [c[1] for c in calls] == fitted.loss
    assert all(c[2] >= 0 for c in calls)
    np.testing.assert_array_equal(users0, untouched.user_factors)  # caller's arrays not modified
    # Two more iterations from the fitted state continue exactly where a 5-iteration fit would be.
    resumed = fit_als(
        confidence,
        factors=4,
        iterations=2,
        user_factors=fitted.user_factors,
        item_factors=fitted.item_factors,
    )
    straight = fit_als(confidence, factors=4, iterations=5, user_factors=users0, item_factors=items0)
    np.testing.assert_array_equal(resumed.item_factors, straight.item_factors)

    silent = fit_als(
        confidence, factors=4, iterations=2, compute_loss=False, callback=lambda *a: calls.append(a)
    )
    assert silent.loss == [] and calls[-1][1] is None and len(silent.seconds) == 2


def test_stored_zeros_count_as_unobserved():
    confidence = random_confidence(seed=6)
    coo = confidence.tocoo()
    # The same matrix plus an explicitly stored zero in the empty row 3.
    padded = sp.csr_matrix(
        (np.append(coo.data, np.float32(0.0)), (np.append(coo.row, 3), np.append(coo.col, 0))),
        shape=confidence.shape,
    )
    assert padded.nnz == confidence.nnz + 1
    a = fit_als(padded, factors=4, iterations=2)
    b = fit_als(confidence, factors=4, iterations=2)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert a.loss == b.loss


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"confidence": np.ones((3, 3))}, "scipy sparse"),
        ({"confidence": sp.csr_matrix(np.array([[1.0, -2.0]]))}, "non-negative"),
        ({"confidence": sp.csr_matrix(np.array([[1.0, np.nan]]))}, "NaN"),
        ({"confidence": sp.csr_matrix(np.array([[1.0, np.inf]]))}, "NaN or infinite"),
        ({"factors": 0}, "factors"),
        ({"iterations": -1}, "iterations"),
        ({"regularization": -0.1}, "regularization"),
        ({"regularization": float("nan")}, "regularization"),
        ({"solver": "lu"}, "solver"),
        ({"cg_steps": 0}, "cg_steps"),
        ({"user_factors": np.zeros((5, 4), dtype=np.float32)}, r"user_factors must have shape \(2, 4\)"),
        ({"item_factors": np.full((2, 4), np.nan)}, "item_factors holds NaN"),
    ],
)
def test_bad_input_is_rejected(kwargs, match):
    arguments = {
        "confidence": sp.csr_matrix(np.array([[1.0, 0.0], [0.0, 2.0]])),
        "factors": 4,
        "iterations": 1,
    }
    arguments.update(kwargs)
    with pytest.raises(AlsInputError, match=match):
        fit_als(**arguments)


def test_solve_rows_and_loss_check_shapes(problem):
    confidence, fixed, current = problem
    with pytest.raises(AlsInputError, match="fixed must have shape"):
        solve_rows(confidence, fixed[:-1], current, 0.1)
    with pytest.raises(AlsInputError, match="current must have shape"):
        solve_rows(confidence, fixed, current[:, :-1], 0.1)
    with pytest.raises(AlsInputError, match="item_factors must have shape"):
        als_loss(confidence, current, fixed.T, 0.1)


# ------------------------------------------------------------------------------------------------
# agreement with implicit 0.7.3 (test-only dependency)


def test_loss_matches_implicit_calculate_loss(problem):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    confidence, fixed, current = problem
    theirs = implicit_als.calculate_loss(confidence, current, fixed, 0.3, num_threads=1)
    # implicit forms Y^T Y with its float32 BLAS: at most n_items * eps32 = 3.6e-6 relative error (worst
    # case) in the unobserved-pairs term; ours is float64 throughout.
    bound = confidence.shape[1] * EPS32
    assert als_loss(confidence, current, fixed, 0.3) == pytest.approx(float(theirs), rel=bound)


def test_initial_factors_are_implicits_draw():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    confidence = random_confidence(n_rows=120, n_cols=90, density=0.08, seed=8)
    ours = fit_als(confidence, factors=8, iterations=0, seed=21)
    model = implicit_als.AlternatingLeastSquares(factors=8, iterations=0, random_state=21, num_threads=1)
    model.fit(confidence, show_progress=False)
    np.testing.assert_array_equal(ours.user_factors, model.user_factors)
    np.testing.assert_array_equal(ours.item_factors, model.item_factors)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_half_step_matches_implicit(solver):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    confidence = random_confidence(n_rows=120, n_cols=90, density=0.08, seed=8)
    rng = np.random.default_rng(21)
    fixed = rng.normal(0.0, 0.3, size=(90, 8)).astype(np.float32)
    current = rng.normal(0.0, 0.3, size=(120, 8)).astype(np.float32)
    ours = solve_rows(confidence, fixed, current, 0.05, solver=solver, cg_steps=3, threads=1)
    theirs = current.copy()
    if solver == "cg":
        implicit_als._als.least_squares_cg(confidence, theirs, fixed, 0.05, num_threads=1, cg_steps=3)
        expected = reference_cg(confidence, fixed, current, 0.05, steps=3)
        passes = 3
    else:
        implicit_als._als.least_squares(confidence, theirs, fixed, 0.05, num_threads=1)
        expected = dense_row_solution(confidence, fixed, 0.05)
        passes = 1
    # Both are float32 solves of the same systems (ours of the CG path; implicit's of both): each lies
    # within the float32 error bound of the exact-arithmetic answer, so they lie within twice it.
    bound = float32_solve_tolerance(confidence, fixed, 0.05, expected, passes)
    assert_rows_within(ours, expected, bound)
    assert_rows_within(theirs, expected, bound)
    assert_rows_within(ours, theirs.astype(np.float64), 2 * bound)


# Relative tolerance on the final training loss of two runs of the same algorithm from the same start.
# Float32 rounding differs between the two (and between BLAS kernels and CPUs): per half-step within
# the bound tested above, but compounded over iterations the factors drift apart along directions in
# which the loss is flat (they differed by 1.3e-3 of their largest element with OpenBLAS's Haswell
# kernels, 0.6e-3 with SkylakeX) while the losses differed by 2.9e-6 and 2.2e-6 relative. 1e-4 is 30x
# that, and the test checks that it is still 30x finer than one iteration's progress.
LOSS_RTOL = 1e-4


@pytest.mark.parametrize("start", ["seed", "given"])
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_fit_matches_implicit_loss(solver, start):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    confidence = random_confidence(n_rows=120, n_cols=90, density=0.08, seed=8)
    settings = {"factors": 8, "regularization": 0.05, "iterations": 6}
    rng = np.random.default_rng(5)
    initial = (
        {
            "user_factors": rng.normal(0, 0.1, size=(120, 8)).astype(np.float32),
            "item_factors": rng.normal(0, 0.1, size=(90, 8)).astype(np.float32),
        }
        if start == "given"
        else {}
    )
    ours = fit_als(confidence, solver=solver, seed=21, **settings, **initial)
    model = implicit_als.AlternatingLeastSquares(
        **settings, use_cg=solver == "cg", random_state=21, num_threads=1
    )
    if initial:
        model.user_factors = initial["user_factors"].copy()
        model.item_factors = initial["item_factors"].copy()
    model.fit(confidence, show_progress=False)
    theirs = als_loss(confidence, model.user_factors, model.item_factors, settings["regularization"])
    assert ours.loss[-1] == pytest.approx(theirs, rel=LOSS_RTOL)
    assert abs(ours.loss[-2] - theirs) > 30 * LOSS_RTOL * theirs


@pytest.mark.skipif(not HETREC.exists(), reason="HetRec Last.fm-2k data not available")
def test_hetrec_training_loss_matches_implicit():
    implicit_als = pytest.importorskip("implicit.cpu.als")
    table = np.loadtxt(HETREC, delimiter="\t", skiprows=1, dtype=np.int64, encoding="latin-1")
    _, users = np.unique(table[:, 0], return_inverse=True)
    _, artists = np.unique(table[:, 1], return_inverse=True)
    plays = sp.csr_matrix((table[:, 2].astype(np.float32), (users, artists)))
    confidence = plays.copy()
    confidence.data = 1.0 + np.log1p(confidence.data)
    ours = fit_als(confidence, factors=16, iterations=3, seed=1, threads=2)
    model = implicit_als.AlternatingLeastSquares(factors=16, iterations=3, random_state=1, num_threads=2)
    model.fit(confidence, show_progress=False)
    theirs = als_loss(confidence, model.user_factors, model.item_factors, 0.01)
    assert ours.loss[-1] == pytest.approx(theirs, rel=LOSS_RTOL)
    assert abs(ours.loss[-2] - theirs) > 30 * LOSS_RTOL * theirs


_FIT_DIGEST = """
import hashlib, sys
import numpy as np
import scipy.sparse as sp
from recsys_assets.core.als import fit_als

rng = np.random.default_rng(3)
items = np.minimum((rng.pareto(1.0, 20000) * 20).astype(np.int64), 1499)
users = rng.integers(0, 2000, 20000)
confidence = sp.csr_matrix(
    (1 + 10 * rng.random(20000).astype(np.float32), (users, items)), shape=(2000, 1500)
)
for threads in map(int, sys.argv[1:]):
    fit = fit_als(confidence, factors=32, iterations=4, seed=11, threads=threads)
    digest = hashlib.sha256(fit.user_factors.tobytes() + fit.item_factors.tobytes())
    print(threads, digest.hexdigest(), repr(fit.loss[-1]))
"""


@pytest.mark.slow
def test_fit_is_bit_reproducible_across_processes_and_threads(tmp_path):
    """A fixed seed gives the same bytes in two fresh processes, the first compiling numba's kernels
    into an empty on-disk cache, the second loading what it can from that cache (numba's cached code
    gave other CG results than freshly compiled code), at 1, 2 and 4 threads (numba's pool sized to 4:
    more than the 2 cores of the development machine)."""
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, PYTHONPATH=str(root), NUMBA_NUM_THREADS="4", NUMBA_CACHE_DIR=str(tmp_path))
    digests = []
    for _ in range(2):
        run = subprocess.run(
            [sys.executable, "-c", _FIT_DIGEST, "1", "2", "4"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        digests += run.stdout.split()[1::3]
    assert len(digests) == 6 and len(set(digests)) == 1, digests


def test_gram_matrix_is_the_float64_sum_rounded_once():
    """The Gram matrix the CG solves with does not depend on a BLAS kernel or thread count: it is the
    exact ``Y^T Y`` rounded once to float32 (a BLAS float32 GEMM differs by its own summation order,
    which changes with ``OPENBLAS_CORETYPE``; fits differed by 1e-3 after 15 iterations)."""
    rng = np.random.default_rng(2)
    fixed = rng.normal(0.0, 0.3, size=(5000, 24)).astype(np.float32)
    # Products of float32 values are exact in float64; sums in 80-bit extended precision carry 11 more
    # bits than float64, so rounding this reference to float32 gives the correctly rounded Gram matrix.
    wide = fixed.astype(np.longdouble)
    reference = (wide.T @ wide).astype(np.float32)
    for threads in (1, 2):
        with numba_threads(threads):
            np.testing.assert_array_equal(_gram(fixed, 0.0, np.float32), reference)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_popularity_renumbering_is_transparent(solver, monkeypatch):
    """Solving users and items in popularity order (inside ``fit_als``) returns the factors in the
    caller's order: the same fit as solving in the given order, up to rounding."""
    import recsys_assets.core.als as als_module

    confidence = random_confidence(n_rows=120, n_cols=90, density=0.08, seed=8)
    user_order, item_order = als_module._popularity_orders(confidence)
    assert not np.array_equal(user_order, np.arange(120)) and not np.array_equal(item_order, np.arange(90))
    renumbered = fit_als(confidence, factors=8, regularization=0.1, iterations=3, solver=solver, seed=4)
    monkeypatch.setattr(als_module, "_BY_POPULARITY", False)
    plain = fit_als(confidence, factors=8, regularization=0.1, iterations=3, solver=solver, seed=4)
    assert renumbered.loss[-1] == pytest.approx(plain.loss[-1], rel=LOSS_RTOL)
    if solver == "cholesky":
        # Exact solves in float64 rounded once to float32: the two orders differ only in float64 sums,
        # which rarely move a float32 result by an ulp; 3 iterations amplify that little here.
        for got, expected in (
            (renumbered.user_factors, plain.user_factors),
            (renumbered.item_factors, plain.item_factors),
        ):
            np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
