"""Annoy and HNSW indexes: recall against exact cosine top-k, zero vectors, save/load, recall definition."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys_assets.core.ann import build_index, calibrate_query, load_index, recall_at_k, related_items
from recsys_assets.core.topk import cosine_topk

BACKENDS = ["annoy", "hnsw"]


@pytest.fixture(scope="module")
def clusters() -> tuple[np.ndarray, np.ndarray]:
    """2000 vectors around 25 random directions (planted clusters), two of them all-zero."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((25, 16))
    label = rng.integers(0, 25, size=2000)
    vectors = (centres[label] + 0.35 * rng.standard_normal((2000, 16))).astype(np.float32)
    vectors[[5, 1234]] = 0.0
    return vectors, label


def build(backend: str, vectors: np.ndarray):
    # One thread keeps the HNSW build reproducible.
    return build_index(vectors, backend, n_trees=20, M=16, ef_construction=100, ef_search=50, threads=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_related_items_recall_and_clusters(clusters, backend):
    vectors, label = clusters
    index = build(backend, vectors)
    idx, sims = related_items(index, 10, threads=2, batch=700)
    exact, exact_sims = cosine_topk(vectors, 10)
    assert idx.shape == (2000, 10) and idx.dtype == np.int32 and sims.dtype == np.float32
    assert recall_at_k(idx, exact, 10) >= 0.95
    live = np.setdiff1d(np.arange(2000), [5, 1234])
    assert (label[idx[live]] == label[live, None]).mean() >= 0.99
    assert not (idx == np.arange(2000)[:, None]).any()
    # Reported similarities are cosines: compare with the exact value of the same pair.
    unit = vectors[live] / np.linalg.norm(vectors[live], axis=1, keepdims=True)
    full_unit = np.zeros_like(vectors)
    full_unit[live] = unit
    pair_cos = np.einsum("ij,ikj->ik", full_unit[live], full_unit[idx[live]])
    np.testing.assert_allclose(sims[live], pair_cos, atol=1e-4)
    assert np.all(np.diff(sims[live], axis=1) <= 1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_zero_vectors_get_and_give_no_neighbours(clusters, backend):
    vectors, _ = clusters
    index = build(backend, vectors)
    assert index.n_items == 2000 and index.n_indexed == 1998
    idx, sims = related_items(index, 5)
    assert (idx[[5, 1234]] == -1).all() and np.isneginf(sims[[5, 1234]]).all()
    assert not np.isin(idx, [5, 1234]).any()
    q_idx, q_sims = index.query(np.vstack([np.zeros(16), vectors[7]]).astype(np.float32), 3)
    assert (q_idx[0] == -1).all() and np.isneginf(q_sims[0]).all()
    assert q_idx[1, 0] == 7 and np.isfinite(q_sims).sum() == 3


@pytest.mark.parametrize("backend", BACKENDS)
def test_query_exclude_self_matches_related(clusters, backend):
    vectors, _ = clusters
    index = build(backend, vectors)
    ids = np.array([0, 1, 2, 3])
    q_idx, _ = index.query(vectors[ids], 6, exclude_self_ids=ids)
    rel_idx, _ = index.neighbours_of_items(ids, 6)
    assert not (q_idx == ids[:, None]).any()
    assert (q_idx == rel_idx).mean() >= 0.9


@pytest.mark.parametrize("backend", BACKENDS)
def test_fewer_items_than_k_pads(backend):
    vectors = np.eye(3, 4, dtype=np.float32) + 0.1
    index = build(backend, vectors)
    idx, sims = related_items(index, 5)
    assert (np.sort(idx[:, :2], axis=1) == np.array([[1, 2], [0, 2], [0, 1]])).all()
    assert (idx[:, 2:] == -1).all() and np.isneginf(sims[:, 2:]).all()


@pytest.mark.parametrize("backend", BACKENDS)
def test_save_load_round_trip(tmp_path, clusters, backend):
    vectors, _ = clusters
    index = build(backend, vectors)
    before = related_items(index, 10)
    path = tmp_path / f"artists.{backend}"
    index.save(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name, path.name + ".json"]
    meta = json.loads((tmp_path / (path.name + ".json")).read_text())
    assert meta["backend"] == backend and meta["dim"] == 16 and meta["missing_ids"] == [5, 1234]
    loaded = load_index(path)
    assert (loaded.backend, loaded.dim, loaded.n_items, loaded.params) == (
        index.backend,
        index.dim,
        index.n_items,
        index.params,
    )
    after = related_items(loaded, 10)
    np.testing.assert_array_equal(after[0], before[0])
    np.testing.assert_array_equal(after[1], before[1])
    # Saving again over the same path replaces both files in place.
    loaded.save(path)
    np.testing.assert_array_equal(related_items(load_index(path), 10)[0], before[0])


def test_load_rejects_mismatched_files(tmp_path, clusters):
    vectors, _ = clusters
    path = tmp_path / "a.ann"
    build("annoy", vectors).save(path)
    with open(path, "ab") as fh:
        fh.write(b"\0" * 16)
    with pytest.raises(ValueError, match="different builds"):
        load_index(path)
    with pytest.raises(FileNotFoundError, match="metadata"):
        load_index(tmp_path / "missing.ann")


def test_bad_arguments(clusters):
    vectors, _ = clusters
    with pytest.raises(ValueError, match="backend"):
        build_index(vectors, "faiss")  # type: ignore[arg-type]
    index = build("hnsw", vectors)
    with pytest.raises(ValueError, match="dimension"):
        index.query(vectors[:, :3], 2)
    with pytest.raises(ValueError, match="k must"):
        index.query(vectors[:2], 0)


def test_recall_at_k_definition():
    approx = np.array([[1, 2, 3], [4, 5, -1], [7, 8, 9], [1, 2, 3]])
    exact = np.array([[3, 1, 0], [4, -1, -1], [-1, -1, -1], [9, 8, 6]])
    # Row recalls by |A ∩ E| / |E| without padding: 2/3, 1/1, (no true neighbour: skipped), 0/3.
    assert recall_at_k(approx, exact, 3) == pytest.approx((2 / 3 + 1 + 0) / 3)
    # Only the first k columns count.
    assert recall_at_k(approx, exact, 1) == pytest.approx((0 + 1 + 0) / 3)
    assert np.isnan(recall_at_k(approx[2:3], exact[2:3], 3))
    with pytest.raises(ValueError, match="columns"):
        recall_at_k(approx, exact, 4)


@pytest.fixture(scope="module")
def structureless() -> np.ndarray:
    """4000 isotropic Gaussian vectors in 32-D: no clusters, so the true top-10 are near-ties that an
    index with a small search effort misses (like 12 genres of 25K artists each at full scale)."""
    return np.random.default_rng(1).standard_normal((4000, 32)).astype(np.float32)


def _recall_all(index, vectors: np.ndarray, k: int) -> float:
    idx, _ = related_items(index, k, threads=2)
    exact, _ = cosine_topk(vectors, 10, threads=2)
    return recall_at_k(idx[:, :10], exact, 10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_calibration_reaches_the_target_on_hard_vectors(structureless, backend):
    vectors = structureless
    index = build_index(vectors, backend, n_trees=10, M=8, ef_construction=40, ef_search=10, threads=1)
    least, _ = index.effort_bounds(20)
    index.set_query_effort(least)
    # The least effort is far from the target here, so the calibration has work to do.
    assert _recall_all(index, vectors, 20) < 0.9
    cal = calibrate_query(index, vectors, 20, 0.96, sample=400, seed=3, budget_s=1e9, threads=2)
    assert cal.method == "ann" and cal.recall >= 0.96 and cal.sample == 400
    assert index.query_effort == cal.effort and cal.query_params == {index.effort_name: cal.effort}
    # Every smaller effort that was tried fell short (the chosen one is the least tried that passes).
    assert all(t["recall"] < 0.96 for t in cal.trials if t["effort"] < cal.effort)
    assert cal.trials[0]["effort"] == least and len(cal.trials) >= 2
    # Independently of the calibration sample: recall over every item meets the 0.95 threshold.
    assert _recall_all(index, vectors, 20) >= 0.95


def test_calibration_falls_back_to_exact_when_over_budget(structureless):
    index = build_index(structureless, "annoy", n_trees=5, threads=1)
    cal = calibrate_query(index, structureless, 20, 0.99, sample=200, budget_s=1e-9, threads=2)
    assert cal.method == "exact" and cal.query_params == {}
    assert len(cal.trials) == 1 and cal.recall == cal.trials[0]["recall"] < 0.99
    summary = cal.summary()
    assert summary["method"] == "exact" and summary["calibration_budget_s"] == 0.0


def test_calibration_bad_arguments(structureless):
    index = build_index(structureless, "hnsw", threads=1)
    with pytest.raises(ValueError, match="rows"):
        calibrate_query(index, structureless[:10], 10, 0.9)
    with pytest.raises(ValueError, match="target"):
        calibrate_query(index, structureless, 10, 1.5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_calibration_lowers_an_effort_that_is_more_than_needed(clusters, backend):
    vectors, _ = clusters
    index = build_index(vectors, backend, n_trees=10, search_k=200_000, ef_search=1000, threads=1)
    cal = calibrate_query(index, vectors, 10, 0.95, sample=300, budget_s=1e9, threads=2)
    least, _ = index.effort_bounds(10)
    assert cal.method == "ann" and cal.recall >= 0.95
    assert cal.effort < cal.trials[0]["effort"]
    # Minimal as far as the search can tell: the least effort, or one below it was tried and failed.
    assert cal.effort == least or any(t["effort"] < cal.effort and t["recall"] < 0.95 for t in cal.trials)
