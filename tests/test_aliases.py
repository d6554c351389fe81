"""Alias (duplicate-artist) candidates on synthetic plays with planted alias pairs."""

from __future__ import annotations

import numpy as np
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
