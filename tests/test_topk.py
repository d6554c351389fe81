"""Exact blocked top-k against a dense brute force with the same tie rule."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.core.topk import cosine_topk, normalize_rows, topk_dot, topk_scores


def brute_topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best-first by score, ties to the lower index; -inf entries are not candidates."""
    n, m = scores.shape
    order = np.lexsort((np.tile(np.arange(m), (n, 1)), -scores), axis=1)[:, :k]
    top = np.take_along_axis(scores, order, axis=1)
    idx = np.where(np.isneginf(top), -1, order)
    pad = k - idx.shape[1]  # k beyond the number of items: padding only
    return np.pad(idx, ((0, 0), (0, pad)), constant_values=-1), np.pad(
        top, ((0, 0), (0, pad)), constant_values=-np.inf
    )


@pytest.fixture
def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    # Small integers make many exact ties, which exercises the tie rule.
    queries = rng.integers(-2, 3, size=(70, 4)).astype(np.float32)
    items = rng.integers(-2, 3, size=(130, 4)).astype(np.float32)
    return queries, items


@pytest.mark.parametrize(("block_rows", "block_cols"), [(4096, 8192), (16, 32), (1, 7)])
def test_matches_brute_force_with_exclusions_and_ties(data, block_rows, block_cols):
    queries, items = data
    exclude = sp.random(70, 130, density=0.3, random_state=1, format="csr")
    exclude.data[:] = 1.0
    idx, scores = topk_dot(queries, items, 9, exclude=exclude, block_rows=block_rows, block_cols=block_cols)
    dense = queries @ items.T
    dense[exclude.toarray() != 0] = -np.inf
    ref_idx, ref_scores = brute_topk(dense, 9)
    assert idx.dtype == np.int32 and scores.dtype == np.float32
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-6)


@pytest.mark.parametrize("block_rows", [None, 1, 16])
def test_topk_scores_matches_brute_force_of_any_score_function(data, block_rows):
    queries, items = data
    exclude = sp.random(70, 130, density=0.3, random_state=2, format="csr")
    exclude.data[:] = 1.0
    # A score that is not an inner product (the case this function exists for); integers make ties.
    dense = np.abs(queries[:, None, :] - items[None, :, :]).sum(axis=2) * -1.0
    calls = []

    def score_fn(ids):
        calls.append(ids.copy())
        return dense[ids]

    idx, scores = topk_scores(score_fn, 70, 130, 9, exclude=exclude, block_rows=block_rows)
    masked = dense.astype(np.float32)
    masked[exclude.toarray() != 0] = -np.inf
    ref_idx, ref_scores = brute_topk(masked, 9)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(scores, ref_scores)
    np.testing.assert_array_equal(np.concatenate(calls), np.arange(70))  # every query once, in order
    if block_rows is not None:
        assert max(len(c) for c in calls) <= block_rows
    # An inner-product score ranks exactly as topk_dot does (ties and padding included).
    dot_idx, dot_scores = topk_scores(lambda ids: queries[ids] @ items.T, 70, 130, 140, exclude=exclude)
    ref = topk_dot(queries, items, 140, exclude=exclude)
    np.testing.assert_array_equal(dot_idx, ref[0])
    np.testing.assert_array_equal(dot_scores, ref[1])


def test_topk_scores_blocks_follow_the_memory_budget_and_bad_scores_are_refused():
    seen = []

    def score_fn(ids):
        seen.append(ids.size)
        return np.zeros((ids.size, 100), np.float32)

    # 2 copies x 4 bytes x 100 items = 800 bytes per query: a 4000-byte budget holds 5.
    topk_scores(score_fn, 12, 100, 3, memory_budget_bytes=4000)
    assert seen == [5, 5, 2]
    with pytest.raises(ValueError, match="shape"):
        topk_scores(lambda ids: np.zeros((ids.size, 99)), 3, 100, 2)
    with pytest.raises(ValueError, match="NaN or infinite"):
        topk_scores(lambda ids: np.full((ids.size, 100), np.nan), 3, 100, 2)


def test_exclude_self_and_padding():
    rng = np.random.default_rng(1)
    items = rng.standard_normal((6, 3)).astype(np.float32)
    idx, scores = topk_dot(items, items, 8, exclude_self=True, block_cols=4)
    dense = items @ items.T
    np.fill_diagonal(dense, -np.inf)
    ref_idx, ref_scores = brute_topk(dense, 8)
    np.testing.assert_array_equal(idx, ref_idx)
    # Only 5 candidates per row: the last three slots are padding.
    assert (idx[:, 5:] == -1).all() and np.isneginf(scores[:, 5:]).all()
    assert not (idx[:, :5] == np.arange(6)[:, None]).any()


def test_unsorted_exclude_indices_are_handled():
    rng = np.random.default_rng(2)
    queries = rng.standard_normal((3, 2)).astype(np.float32)
    items = rng.standard_normal((10, 2)).astype(np.float32)
    exclude = sp.csr_matrix(
        (np.ones(4), np.array([7, 2, 9, 0]), np.array([0, 2, 4, 4])), shape=(3, 10)
    )  # deliberately unsorted within rows
    idx, _ = topk_dot(queries, items, 10, exclude=exclude, block_cols=3)
    dense = queries @ items.T
    dense[exclude.toarray() != 0] = -np.inf
    np.testing.assert_array_equal(idx, brute_topk(dense, 10)[0])


def test_cosine_topk_zero_rows_and_query_subset():
    rng = np.random.default_rng(3)
    vectors = rng.standard_normal((40, 5)).astype(np.float32)
    vectors[[4, 17]] = 0.0
    idx, scores = cosine_topk(vectors, 6)
    unit = normalize_rows(vectors)
    dense = unit @ unit.T
    np.fill_diagonal(dense, -np.inf)
    dense[:, [4, 17]] = -np.inf
    dense[[4, 17], :] = -np.inf
    ref_idx, ref_scores = brute_topk(dense, 6)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-5, atol=1e-6)
    assert (idx[[4, 17]] == -1).all() and not np.isin(idx, [4, 17]).any()
    sub_idx, sub_scores = cosine_topk(vectors, 6, query_ids=np.array([9, 4, 0]))
    np.testing.assert_array_equal(sub_idx, idx[[9, 4, 0]])
    np.testing.assert_array_equal(sub_scores, scores[[9, 4, 0]])


def test_normalize_rows_keeps_zero_rows():
    unit = normalize_rows(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(unit, [[0.6, 0.8], [0.0, 0.0]])


def test_input_errors():
    a = np.ones((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="factors"):
        topk_dot(a, np.ones((3, 4), dtype=np.float32), 1)
    with pytest.raises(ValueError, match="k must"):
        topk_dot(a, a, 0)
    with pytest.raises(ValueError, match="NaN"):
        topk_dot(np.full((2, 2), np.nan), a, 1)
    with pytest.raises(ValueError, match="exclude has shape"):
        topk_dot(a, a, 1, exclude=sp.csr_matrix((2, 3)))
    with pytest.raises(TypeError, match="2-D"):
        topk_dot(np.ones(3), a, 1)
    with pytest.raises(ValueError, match="query_ids"):
        cosine_topk(a, 1, query_ids=np.array([5]))
