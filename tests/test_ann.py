"""Annoy and HNSW indexes: recall against exact cosine top-k, zero vectors, save/load, recall definition."""

from __future__ import annotations

import json

import numpy as np
import pytest

from recsys_assets.core.ann import build_index, load_index, recall_at_k, related_items
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
