"""Alias (duplicate-artist) candidates on synthetic plays with planted alias pairs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recsys_assets.core.aliases import alias_candidates, shared_counts
from recsys_assets.core.ann import build_index
from recsys_assets.core.lsa import fit_lsa
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.weighting import weight_user_items


@pytest.fixture(scope="module")
def planted():
    data = generate_plays(
        n_users=2000, n_artists=3000, artists_per_user=50.0, n_genres=12, n_alias_pairs=20, seed=0
    )
    plays = data.to_csr()
    # The generator's only taste structure is the genre, so rank = number of genres captures it.
    factors = fit_lsa(weight_user_items(plays, "bm25"), factors=12, seed=0).item_factors
    return data, plays, factors


def test_shared_counts_match_dense():
    plays = sp.random(30, 12, density=0.3, random_state=0, format="csr")
    plays.data[:5] = 0.0  # stored zeros are not listens
    a = np.array([0, 3, 5, 11, 2])
    b = np.array([1, 3, 7, 0, 9])
    listeners, shared = shared_counts(plays, a, b)
    binary = plays.toarray() > 0
    np.testing.assert_array_equal(listeners, binary.sum(axis=0))
    np.testing.assert_array_equal(shared, (binary[:, a] & binary[:, b]).sum(axis=0))


def test_planted_aliases_rank_at_the_top(planted):
    data, plays, factors = planted
    n_pairs = len(data.alias_pairs)
    # Aliases are one neighbour among their whole genre (~250 artists): k must cover a genre.
    frame = alias_candidates(
        factors,
        plays,
        k=300,
        min_factor_similarity=0.0,
        max_listener_overlap=0.01,
        min_listeners=20,
        threads=2,
    )
    truth = {tuple(p) for p in np.sort(data.alias_pairs, axis=1).tolist()}
    hit = np.array([(a, b) in truth for a, b in zip(frame.artist_id, frame.alias_id, strict=True)])
    # Measured 0.95 at seed 0 (0.95-1.0 over seeds 0-3); 0.8 leaves room for BLAS/SVD rounding.
    assert hit[: 2 * n_pairs].mean() * 2 >= 0.8
    # Filters and ordering hold for every row.
    assert (frame.artist_id < frame.alias_id).all()
    assert (frame.listener_similarity <= 0.01).all()
    assert (frame[["artist_listeners", "alias_listeners"]].min(axis=1) >= 20).all()
    assert (np.diff(frame.score.to_numpy()) <= 0).all()
    # Listener statistics agree with a direct count on the data.
    binary = (plays > 0).toarray()
    top = frame.head(10)
    both = (binary[:, top.artist_id] & binary[:, top.alias_id]).sum(axis=0)
    either = (binary[:, top.artist_id] | binary[:, top.alias_id]).sum(axis=0)
    np.testing.assert_array_equal(top.shared_listeners, both)
    np.testing.assert_allclose(top.listener_similarity, both / either)


def test_filters_and_index_source(planted):
    _, plays, factors = planted
    strict = alias_candidates(factors, plays, k=20, min_factor_similarity=0.9, max_listener_overlap=0.0)
    assert len(strict) > 0
    assert (strict.factor_similarity >= 0.9).all() and (strict.shared_listeners == 0).all()
    assert (strict[["artist_listeners", "alias_listeners"]].min(axis=1) >= 20).all()
    index = build_index(factors, "hnsw", ef_search=100, threads=1)
    via_index = alias_candidates(
        factors, plays, k=20, min_factor_similarity=0.9, max_listener_overlap=0.0, index=index
    )
    exact_pairs = set(zip(strict.artist_id, strict.alias_id, strict=True))
    index_pairs = set(zip(via_index.artist_id, via_index.alias_id, strict=True))
    assert len(exact_pairs & index_pairs) >= 0.9 * len(exact_pairs)


def test_input_errors(planted):
    _, plays, factors = planted
    with pytest.raises(ValueError, match="must match"):
        alias_candidates(factors[:10], plays)
    with pytest.raises(TypeError, match="sparse"):
        alias_candidates(factors, plays.toarray())
    with pytest.raises(ValueError, match="Jaccard"):
        alias_candidates(factors, plays, max_listener_overlap=2.0)


def _reference_candidates(factors, plays, k, min_sim, max_overlap, min_listeners):
    """The method of the module docstring, computed directly over all pairs at once (no blocks)."""
    from scipy.stats import poisson

    from recsys_assets.core.topk import cosine_topk, normalize_rows

    n_users, n_items = plays.shape
    neighbours, _ = cosine_topk(factors, k)
    source = np.repeat(np.arange(n_items), k)
    target = neighbours.ravel().astype(np.int64)
    found = target >= 0
    keys = np.unique(np.minimum(source, target)[found] * n_items + np.maximum(source, target)[found])
    a, b = keys // n_items, keys % n_items
    unit = normalize_rows(factors)
    sim = np.einsum("ij,ij->i", unit[a], unit[b])
    binary = (plays > 0).astype(np.int64).tocsc()
    listeners = np.diff(binary.indptr)
    shared = np.asarray(binary[:, a].multiply(binary[:, b]).sum(axis=0)).ravel()
    independent = listeners[a] * listeners[b] / n_users
    lift = np.divide(shared, independent, out=np.zeros(a.size), where=independent > 0)
    typical = np.empty(a.size)
    for chunk in np.array_split(np.argsort(sim, kind="stable"), max(1, min(20, a.size // 50))):
        typical[chunk] = np.median(lift[chunk])
    expected = typical * independent
    union = listeners[a] + listeners[b] - shared
    jaccard = np.divide(shared, union, out=np.zeros(a.size), where=union > 0)
    keep = (
        (sim >= min_sim)
        & (jaccard <= max_overlap)
        & (np.minimum(listeners[a], listeners[b]) >= min_listeners)
    )
    score = -poisson.logcdf(shared, expected)
    return {(int(x), int(y)): s for x, y, s in zip(a[keep], b[keep], score[keep], strict=True)}


def test_blocked_equals_unblocked_and_the_reference(planted):
    """Blocks sized from the memory budget change nothing: a budget that forces ~100 blocks of pairs (and
    of neighbour queries) gives the same frame, bit for bit, as one block; both match a direct
    computation of the definition."""
    _, plays, factors = planted
    args = dict(k=60, min_factor_similarity=0.2, max_listener_overlap=0.02, min_listeners=5, threads=2)
    one_block = alias_candidates(factors, plays, **args, memory_budget_bytes=1 << 40)
    blocked = alias_candidates(factors, plays, **args, memory_budget_bytes=1)
    assert len(one_block) > 100
    pd.testing.assert_frame_equal(blocked, one_block, check_exact=True)
    reference = _reference_candidates(factors, plays, 60, 0.2, 0.02, 5)
    assert set(zip(one_block.artist_id, one_block.alias_id, strict=True)) == set(reference)
    np.testing.assert_allclose(
        one_block.score,
        [reference[(a, b)] for a, b in zip(one_block.artist_id, one_block.alias_id, strict=True)],
        rtol=1e-9,
    )
    index = build_index(factors, "hnsw", ef_search=200, threads=1)
    via_index = [
        alias_candidates(factors, plays, **args, index=index, memory_budget_bytes=budget)
        for budget in (1 << 40, 1)
    ]
    pd.testing.assert_frame_equal(via_index[1], via_index[0], check_exact=True)


def test_working_memory_follows_the_budget(planted):
    """numpy's allocations (traced by tracemalloc) never hold the gathered factor rows of every candidate
    pair at once (the unblocked computation did: 2 x f float32 per pair), and peak lower with a small
    budget than with an unlimited one."""
    import tracemalloc

    from recsys_assets.core.topk import cosine_topk

    _, plays, factors = planted
    wide = np.repeat(factors, 32, axis=1)  # 384 factors, so the gathered rows dominate everything else
    neighbours, _ = cosine_topk(wide, 150)
    rows = np.repeat(np.arange(wide.shape[0]), 150)
    pairs = np.unique(
        np.minimum(rows, neighbours.ravel()) * 10**6 + np.maximum(rows, neighbours.ravel())
    ).size
    all_gathered = pairs * 2 * wide.shape[1] * 4

    def peak(budget: int) -> int:
        tracemalloc.start()
        alias_candidates(wide, plays, k=150, threads=2, memory_budget_bytes=budget)
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top

    unlimited, small = peak(1 << 40), peak(1 << 20)
    assert unlimited < all_gathered / 2, (unlimited, all_gathered)
    assert small < 0.8 * unlimited, (small, unlimited)


def test_min_score_filters_block_by_block(planted):
    """``min_score`` keeps exactly the pairs a filter of the whole frame would (it is applied per block, so
    at Last.fm scale the weak pairs, most of the ~36M candidates, are never gathered into one frame)."""
    _, plays, factors = planted
    args = dict(k=60, min_factor_similarity=0.2, max_listener_overlap=0.02, min_listeners=5, threads=2)
    every = alias_candidates(factors, plays, **args, memory_budget_bytes=1)
    threshold = float(every.score.median())
    strong = alias_candidates(factors, plays, **args, memory_budget_bytes=1, min_score=threshold)
    expected = every[every.score >= threshold].reset_index(drop=True)
    assert 0 < len(strong) < len(every)
    pd.testing.assert_frame_equal(strong, expected, check_exact=True)
