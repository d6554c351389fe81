"""PMF, gravity MF and the shallow networks: gradients against finite differences of the objectives
written out here from their definitions (float64), loss decreasing, reproducibility, bad settings."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.models import gravity as gravity_mod
from recsys_assets.core.models import nets as nets_mod
from recsys_assets.core.models import pmf as pmf_mod
from recsys_assets.core.models import registry
from recsys_assets.core.models.values import scale_values
from recsys_assets.core.sections import SettingsError


def plays(n_users: int = 30, n_items: int = 25, density: float = 0.25, seed: int = 0) -> sp.csr_matrix:
    """Random play counts in [1, 200) with an empty user row (2)."""
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((n_users, n_items)) < density, rng.integers(1, 200, (n_users, n_items)), 0)
    dense[2] = 0
    return sp.csr_matrix(dense.astype(np.float32))


def low_rank_plays(
    n_users: int = 80, n_items: int = 50, density: float = 0.4, seed: int = 0
) -> sp.csr_matrix:
    """Play counts whose log is a rank-2 pattern plus user and item effects (learnable structure)."""
    rng = np.random.default_rng(seed)
    logs = 3 + rng.normal(size=(n_users, 2)) @ rng.normal(size=(2, n_items)) + rng.normal(size=(n_items,))
    dense = np.where(rng.random((n_users, n_items)) < density, np.round(np.expm1(np.clip(logs, 0.1, 8))), 0)
    dense[2] = 0
    return sp.csr_matrix(np.maximum(dense, 0).astype(np.float32))


def numeric_gradient(objective, array: np.ndarray, h: float = 1e-6) -> np.ndarray:
    grad = np.zeros_like(array)
    for index in np.ndindex(array.shape):
        old = array[index]
        array[index] = old + h
        up = objective()
        array[index] = old - h
        down = objective()
        array[index] = old
        grad[index] = (up - down) / (2 * h)
    return grad


# ---------------------------------------------------------------------------------------------------
# PMF


def pmf_batch_gradients(users, items, values, params, mu, lam_u, lam_i):
    """PMF's per-pair gradients of one batch (the kernel) summed into each parameter's rows, and the
    kernel's per-pair loss."""
    X, Y, bu, bi = params["X"], params["Y"], params["bu"], params["bi"]
    k, f = users.size, X.shape[1]
    gX, gY, gb, loss = np.empty((k, f)), np.empty((k, f)), np.empty((k, 2)), np.empty((k, 2))
    pmf_mod._batch_gradients(users, items, values, 0, k, X, Y, bu, bi, mu, lam_u, lam_i, gX, gY, gb, loss)
    summed = {name: np.zeros_like(a) for name, a in params.items()}
    np.add.at(summed["X"], users, gX)
    np.add.at(summed["Y"], items, gY)
    np.add.at(summed["bu"], users, gb[:, 0])
    np.add.at(summed["bi"], items, gb[:, 1])
    return summed, loss


def test_pmf_batch_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    n_users, n_items, f, lam, mu = 6, 5, 3, 0.3, 0.7
    X, Y = rng.normal(size=(n_users, f)), rng.normal(size=(n_items, f))
    bu, bi = rng.normal(size=n_users), rng.normal(size=n_items)
    users = np.array([0, 1, 1, 4, 5, 0], np.int32)
    items = np.array([2, 0, 3, 3, 1, 4], np.int32)
    values = rng.normal(size=users.size)

    def objective():  # sum over the batch of (r̂ - r)^2 + λ(|x|^2 + |y|^2 + b_u^2 + b_i^2)
        pred = mu + bu[users] + bi[items] + (X[users] * Y[items]).sum(1)
        reg = (X[users] ** 2).sum() + (Y[items] ** 2).sum() + (bu[users] ** 2).sum() + (bi[items] ** 2).sum()
        return ((pred - values) ** 2).sum() + lam * reg

    lam_u, lam_i = np.full(n_users, lam), np.full(n_items, lam)
    params = {"X": X, "Y": Y, "bu": bu, "bi": bi}
    summed, loss = pmf_batch_gradients(users, items, values, params, mu, lam_u, lam_i)
    for name, array in params.items():
        np.testing.assert_allclose(summed[name], numeric_gradient(objective, array), rtol=1e-6, atol=1e-7)
    assert loss[:, 0].sum() == pytest.approx(objective(), rel=1e-12)


def test_pmf_row_prior_counts_each_row_once_over_its_pairs():
    """prior = "row": over a batch holding all of a row's pairs, the L2 shares add up to λ|row|^2 once
    (the PMF MAP objective), and the gradients are that objective's."""
    rng = np.random.default_rng(2)
    n_users, n_items, f, lam, mu = 4, 5, 3, 0.8, 0.2
    X, Y = rng.normal(size=(n_users, f)), rng.normal(size=(n_items, f))
    bu, bi = rng.normal(size=n_users), rng.normal(size=n_items)
    users = np.array([0, 0, 0, 1, 2, 2, 3], np.int32)
    items = np.array([1, 2, 4, 1, 1, 0, 3], np.int32)
    values = rng.normal(size=users.size)

    def objective():  # sum of (r̂ - r)^2 + λ (sum over users once + sum over items once)
        pred = mu + bu[users] + bi[items] + (X[users] * Y[items]).sum(1)
        reg = (X**2).sum() + (Y**2).sum() + (bu**2).sum() + (bi**2).sum()
        return ((pred - values) ** 2).sum() + lam * reg

    lam_u = pmf_mod._pair_shares(lam, "row", np.bincount(users, minlength=n_users)).astype(np.float64)
    lam_i = pmf_mod._pair_shares(lam, "row", np.bincount(items, minlength=n_items)).astype(np.float64)
    params = {"X": X, "Y": Y, "bu": bu, "bi": bi}
    summed, loss = pmf_batch_gradients(users, items, values, params, mu, lam_u, lam_i)
    for name, array in params.items():
        np.testing.assert_allclose(summed[name], numeric_gradient(objective, array), rtol=1e-6, atol=1e-7)
    # The shares are float32 (λ / n rounded: relative error <= 6e-8).
    assert loss[:, 0].sum() == pytest.approx(objective(), rel=1e-6)


def test_pmf_fits_reproducibly_and_validation_improves():
    matrix = low_rank_plays()
    settings = pmf_mod.PmfSettings(factors=4, min_user_plays=3, batch_size=64, max_epochs=12, seed=3)
    a = pmf_mod.fit(matrix, settings, threads=1)
    b = pmf_mod.fit(matrix, settings, threads=1)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)
    validation = a.loss_components["validation_mse"]
    assert min(validation) < validation[0]
    assert a.loss[-1] < a.loss[0]
    assert "lr_range" in a.curves and len(a.curves["lr_range"]["x"]) == pmf_mod.RANGE_BATCHES
    # predict = b + b_u + b_i + x.y from the stored parts; the dot product ranks as predict does.
    u, i = np.array([0, 5, 7]), np.array([1, 2, 3])
    dots = (a.user_factors[u].astype(np.float64) * a.item_factors[i]).sum(1)
    np.testing.assert_allclose(a.predict(u, i), a.user_offset[u] + dots)
    # The empty user (2) was filtered out: no vector, predicted b + b_i.
    assert not a.user_factors[2, :-1].any() and a.user_bias[2] == 0


def test_pmf_hogwild_threads_train_alike():
    """Two threads share the parameters without locks: not bit-identical, but a fit as good."""
    matrix = low_rank_plays()
    settings = pmf_mod.PmfSettings(factors=4, learning_rate=0.01, max_epochs=6, batch_size=16)
    one = pmf_mod.fit(matrix, settings, threads=1)
    two = pmf_mod.fit(matrix, settings, threads=2)
    assert np.isfinite(two.user_factors).all()
    assert two.loss_components["validation_mse"][-1] == pytest.approx(
        one.loss_components["validation_mse"][-1], rel=0.05
    )


def test_pmf_unobserved_draws_avoid_stored_pairs_and_cover_the_rest():
    matrix = plays(n_users=6, n_items=12, density=0.5, seed=4)
    matrix.sort_indices()
    indptr, indices = matrix.indptr.astype(np.int64), matrix.indices.astype(np.int32)
    users = np.repeat(np.arange(6, dtype=np.int32), 400)
    drawn = pmf_mod._unobserved_items(users, indptr, indices, 12, 3, 7)
    dense = matrix.toarray() > 0
    per_user = drawn.reshape(6, -1)
    for u in range(6):
        free = np.flatnonzero(~dense[u])
        if free.size == 0:  # the row stores every artist: nothing to draw
            assert (per_user[u] == -1).all()
            continue
        assert set(per_user[u].tolist()) == set(free.tolist())  # only unstored artists, all of them
        # Uniform among them: 1200 draws, each count binomial(1200, 1/m); 5 standard deviations.
        counts = np.bincount(per_user[u], minlength=12)[free]
        expected = 1200 / free.size
        assert np.abs(counts - expected).max() < 5 * np.sqrt(expected * (1 - 1 / free.size))
    # The same seed draws the same items; another seed others.
    np.testing.assert_array_equal(drawn, pmf_mod._unobserved_items(users, indptr, indices, 12, 3, 7))
    assert (drawn != pmf_mod._unobserved_items(users, indptr, indices, 12, 3, 8)).any()


def test_pmf_unobserved_pairs_rank_played_artists_first():
    """Without unobserved pairs r̂ knows nothing about absence; with them, observed pairs score above
    unobserved ones (training AUC of r̂ on the pattern)."""
    # Two taste groups: a user plays only (half of) their group's artists; presence is learnable.
    rng = np.random.default_rng(5)
    group_user, group_item = np.arange(60) % 2, np.arange(40) % 2
    same = group_user[:, None] == group_item[None, :]
    dense = same & (rng.random((60, 40)) < 0.5)
    matrix = sp.csr_matrix(np.where(dense, rng.integers(1, 100, dense.shape), 0).astype(np.float32))
    aucs = {}
    for k in (0, 3):
        settings = pmf_mod.PmfSettings(
            factors=4, learning_rate=0.03, max_epochs=20, batch_size=64, unobserved=k
        )
        fitted = pmf_mod.fit(matrix, settings, threads=1)
        users, items = np.nonzero(np.ones_like(dense))
        scores = fitted.predict(users, items).reshape(dense.shape)
        rows = [u for u in range(dense.shape[0]) if 0 < dense[u].sum() < dense.shape[1]]
        aucs[k] = np.mean(
            [(scores[u][dense[u]][:, None] > scores[u][~dense[u]][None, :]).mean() for u in rows]
        )
    assert aucs[3] > 0.75 and aucs[3] > aucs[0] + 0.1, aucs


def test_pmf_pairs_are_shuffled_then_sorted_by_user_within_chunks():
    rng = np.random.default_rng(0)
    users = rng.integers(0, 1000, 5000).astype(np.int32)
    order = pmf_mod._shuffled_in_chunks(users, 100, 1000, np.random.default_rng(1))
    np.testing.assert_array_equal(np.sort(order), np.arange(5000))  # a permutation
    chunk = 10 * 100  # round(1000 users / 100 per batch) batches of 100
    for start in range(0, 5000, chunk):
        assert (np.diff(users[order[start : start + chunk]]) >= 0).all()
    # Chunks are random samples of the pairs, not runs of the input order.
    assert abs(order[:chunk].mean() - 2500) < 300


def test_pmf_factor_grid_picks_a_candidate():
    settings = pmf_mod.PmfSettings(factors_grid="2,6", grid_epochs=1, learning_rate=0.01, max_epochs=3)
    result = pmf_mod.fit(plays(), settings, threads=1)
    assert result.curves["factors_grid"]["x"] == [2.0, 6.0]
    assert result.user_factors.shape[1] - 1 in (2, 6)


def test_value_scalings():
    matrix = sp.csr_matrix(np.array([[0, 3, 1], [4, 0, 8]], np.float32))
    np.testing.assert_allclose(scale_values(matrix, "log1p").toarray(), np.log1p(matrix.toarray()), rtol=1e-6)
    np.testing.assert_allclose(
        scale_values(matrix, "user_max").toarray(), [[0, 1, 1 / 3], [0.5, 0, 1]], rtol=1e-6
    )
    np.testing.assert_array_equal(scale_values(matrix, "none").toarray(), matrix.toarray())


# ---------------------------------------------------------------------------------------------------
# Gravity


def gravity_loss(A: np.ndarray, U: np.ndarray, V: np.ndarray, lam_r: float, lam_g: float) -> float:
    """The issue's loss from its definition, with the gravity sum over every dense pair."""
    observed = A != 0
    pred = U @ V.T
    n, m = A.shape
    mse = ((A - pred)[observed] ** 2).sum() / observed.sum()
    reg = lam_r * ((U**2).sum() / n + (V**2).sum() / m)
    return mse + reg + lam_g * (pred**2).sum() / (n * m)


def test_gravity_gradient_and_loss_parts_match_definition():
    matrix = scale_values(plays(8, 7, 0.4), "log1p").astype(np.float64)
    rng = np.random.default_rng(2)
    U, V = rng.normal(size=(8, 3)), rng.normal(size=(7, 3))
    settings = gravity_mod.GravitySettings(factors=3, regularization=0.3, gravity=0.7)
    problem = gravity_mod._Problem.of(matrix)
    A = matrix.toarray()
    g_u, g_v, _ = gravity_mod.gradients(problem, U, V, settings)
    np.testing.assert_allclose(
        g_u, numeric_gradient(lambda: gravity_loss(A, U, V, 0.3, 0.7), U), rtol=1e-6, atol=1e-8
    )
    np.testing.assert_allclose(
        g_v, numeric_gradient(lambda: gravity_loss(A, U, V, 0.3, 0.7), V), rtol=1e-6, atol=1e-8
    )
    parts = gravity_mod.loss_parts(problem, U, V, settings)
    assert sum(parts.values()) == pytest.approx(gravity_loss(A, U, V, 0.3, 0.7), rel=1e-10)


def test_gravity_als_half_step_is_the_exact_row_minimiser():
    matrix = scale_values(plays(8, 7, 0.4), "log1p").astype(np.float64)
    rng = np.random.default_rng(4)
    U, V = rng.normal(size=(8, 3)), rng.normal(size=(7, 3))
    lam_r, lam_g = 0.3, 0.7
    problem = gravity_mod._Problem.of(matrix)
    n, m = matrix.shape
    omega = matrix.nnz
    gravity_mod._als_half(problem.csr, V, U, lam_r * omega / n, lam_g * omega / (n * m), steps=3)
    # With 3 = f CG steps the solve is exact: the gradient w.r.t. U vanishes.
    settings = gravity_mod.GravitySettings(factors=3, regularization=lam_r, gravity=lam_g)
    g_u, _, _ = gravity_mod.gradients(problem, U, V, settings)
    np.testing.assert_allclose(g_u, 0, atol=1e-9)


@pytest.mark.parametrize("solver", ["als", "gd"])
def test_gravity_loss_decreases_and_is_reproducible(solver):
    matrix = plays(40, 30, 0.3)
    settings = gravity_mod.GravitySettings(factors=4, solver=solver, iterations=20, learning_rate=2.0)
    a = gravity_mod.fit(matrix, settings, threads=1)
    b = gravity_mod.fit(matrix, settings, threads=1)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert a.loss[-1] < a.loss[0]
    assert set(a.loss_components) == {"observed_mse", "regularization", "gravity"}
    total = [sum(parts) for parts in zip(*a.loss_components.values(), strict=True)]
    np.testing.assert_allclose(total, a.loss)


# ---------------------------------------------------------------------------------------------------
# Networks


def nets_objective(p: dict, batch: nets_mod.Batch, settings, masks) -> float:
    """The batch objective from the definition, with an independent batch-norm forward pass."""
    x, y = p["X"][batch.users], p["Y"][batch.items]
    if settings.architecture == "mlp":
        a = np.concatenate([x, y], axis=1)
        for layer in (1, 2, 3):
            r = np.maximum(a @ p[f"W{layer}"] + p[f"c{layer}"], 0)
            norm = (r - r.mean(0)) / np.sqrt(r.var(0) + nets_mod.BN_EPS)
            a = p[f"gamma{layer}"] * norm + p[f"beta{layer}"]
            if masks is not None and masks[layer - 1] is not None:
                a = a * masks[layer - 1]
        out = (a @ p["W4"])[:, 0] + p["c4"][0]
    else:
        out = (x * y).sum(1)
    if settings.architecture != "dot":
        out = out + p["bu"][batch.users] + p["bi"][batch.items]
    reg = (batch.user_share * (x**2).sum(1)).sum() + (batch.item_share * (y**2).sum(1)).sum()
    return float((batch.weight * (batch.target - out) ** 2).sum() + settings.regularization * reg)


@pytest.mark.parametrize("architecture", ["dot", "dot_bias", "mlp"])
def test_nets_gradients_match_finite_differences(architecture):
    settings = nets_mod.NetsSettings(
        architecture=architecture, factors=3, hidden=4, regularization=0.2, init_std=0.5
    )
    rng = np.random.default_rng(5)
    p = nets_mod.init_params(settings, 5, 6, rng, dtype=np.float64)
    for key in p:
        if key.startswith(("c", "beta", "gamma", "b")):
            p[key] = p[key] + rng.normal(scale=0.3, size=p[key].shape)
    batch = nets_mod.Batch(
        users=np.array([0, 1, 1, 3, 4, 0, 2, 4]),
        items=np.array([2, 0, 5, 3, 1, 4, 2, 2]),
        target=np.array([1, 0, 1, 0, 1, 0, 1, 0], float),
        weight=rng.uniform(0.5, 3, 8),
        user_share=rng.uniform(0.1, 1, 8),
        item_share=rng.uniform(0.1, 1, 8),
    )
    masks = [(rng.random((8, 4)) < 0.5) * 2.0, None, None] if architecture == "mlp" else None
    value, grads = nets_mod.backward(p, batch, settings, masks)
    assert value == pytest.approx(nets_objective(p, batch, settings, masks), rel=1e-12)
    summed = {"X": np.zeros_like(p["X"]), "Y": np.zeros_like(p["Y"])}
    np.add.at(summed["X"], batch.users, grads["gX"])
    np.add.at(summed["Y"], batch.items, grads["gY"])
    if architecture != "dot":
        summed["bu"], summed["bi"] = np.zeros_like(p["bu"]), np.zeros_like(p["bi"])
        np.add.at(summed["bu"], batch.users, grads["gbu"])
        np.add.at(summed["bi"], batch.items, grads["gbi"])
    dense = [k for k in grads if k in p]
    assert (architecture == "mlp") == bool(dense)
    for name in [*summed, *dense]:
        expected = numeric_gradient(lambda: nets_objective(p, batch, settings, masks), p[name])
        got = summed[name] if name in summed else grads[name]
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7, err_msg=name)


def test_negative_samples_are_unobserved_and_weighted():
    matrix = plays(20, 15, 0.3)
    matrix.sort_indices()
    settings = nets_mod.NetsSettings(negatives=3)
    sample = nets_mod.epoch_sample(matrix, settings, seed=7)
    negative = sample.target == 0
    assert not matrix[sample.users[negative], sample.items[negative]].A1.any()
    counts = np.diff(matrix.indptr)
    # The weights of a user's draws sum to the user's number of unobserved artists.
    sums = np.bincount(sample.users[negative], weights=sample.weight[negative], minlength=20)
    has = counts > 0
    np.testing.assert_allclose(sums[has], 15 - counts[has])
    # Every row's L2 shares sum to one over the sample.
    np.testing.assert_allclose(
        np.bincount(sample.users, weights=sample.user_share)[np.unique(sample.users)], 1
    )


@pytest.mark.parametrize("architecture", ["dot", "dot_bias", "mlp"])
def test_nets_loss_decreases_reproducibly(architecture):
    matrix = plays(40, 30, 0.3)
    settings = nets_mod.NetsSettings(
        architecture=architecture, factors=4, epochs=4, batch_size=64, learning_rate=0.02
    )
    a = nets_mod.fit(matrix, settings, threads=1)
    b = nets_mod.fit(matrix, settings, threads=1)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    assert a.loss[-1] < a.loss[0]
    scores = registry()["nets"].score(a, np.array([0, 3]))
    assert scores.shape == (2, 30) and np.isfinite(scores).all()
    if architecture != "mlp":
        np.testing.assert_allclose(scores, a.user_factors[[0, 3]] @ a.item_factors.T)


# ---------------------------------------------------------------------------------------------------
# Settings and registry


@pytest.mark.parametrize(
    ("section", "values"),
    [
        (pmf_mod.PmfSettings, {"scaling": "sqrt"}),
        (pmf_mod.PmfSettings, {"factors_grid": "20,x"}),
        (pmf_mod.PmfSettings, {"learning_rate": -1.0}),
        (pmf_mod.PmfSettings, {"validation_fraction": 0.0}),
        (gravity_mod.GravitySettings, {"solver": "adam"}),
        (gravity_mod.GravitySettings, {"gravity": -0.1}),
        (nets_mod.NetsSettings, {"architecture": "lstm"}),
        (nets_mod.NetsSettings, {"dropout": 1.0}),
    ],
)
def test_bad_settings_are_rejected(section, values):
    with pytest.raises(SettingsError, match=section.TABLE):
        section(**values)


def test_registry_lists_the_new_models():
    models = registry()
    assert {"pmf", "gravity", "nets"} <= set(models)
    assert models["pmf"].predicts_values and models["gravity"].predicts_values
    assert models["pmf"].input == models["gravity"].input == models["nets"].input == "plays"
