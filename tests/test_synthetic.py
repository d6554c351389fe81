"""Tests for the synthetic Last.fm-shaped generator."""

from __future__ import annotations

import numpy as np
import pytest

from recsys_assets.core.synthetic import SyntheticPlays, generate_plays


@pytest.fixture(scope="module")
def plays() -> SyntheticPlays:
    return generate_plays(n_users=3000, n_artists=4000, artists_per_user=40.0, n_alias_pairs=25, seed=7)


def test_deterministic_per_seed() -> None:
    a = generate_plays(n_users=300, n_artists=500, seed=3)
    b = generate_plays(n_users=300, n_artists=500, seed=3)
    c = generate_plays(n_users=300, n_artists=500, seed=4)
    for field in ("user_index", "artist_index", "plays", "artist_genre", "user_genre", "alias_pairs"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.artist_names == b.artist_names
    assert a.nnz != c.nnz or not np.array_equal(a.artist_index, c.artist_index)
    assert a.artist_names != c.artist_names


def test_dtypes_shapes_and_ranges(plays: SyntheticPlays) -> None:
    for arr in (plays.user_index, plays.artist_index, plays.plays, plays.artist_genre, plays.user_genre):
        assert arr.dtype == np.int32
    assert plays.user_index.shape == plays.artist_index.shape == plays.plays.shape == (plays.nnz,)
    assert plays.artist_genre.shape == (plays.n_artists,)
    assert plays.user_genre.shape == (plays.n_users,)
    assert len(plays.artist_names) == plays.n_artists
    assert plays.user_index.min() >= 0 and plays.user_index.max() < plays.n_users
    assert plays.artist_index.min() >= 0 and plays.artist_index.max() < plays.n_artists
    assert plays.plays.min() >= 1
    assert plays.artist_genre.min() >= 0 and plays.artist_genre.max() < 12


def test_pairs_unique_and_sorted(plays: SyntheticPlays) -> None:
    key = plays.user_index.astype(np.int64) * plays.n_artists + plays.artist_index
    assert np.all(np.diff(key) > 0)  # strictly increasing: sorted by (user, artist) and unique


def test_every_user_has_an_artist_and_mean_degree_near_target(plays: SyntheticPlays) -> None:
    degree = np.bincount(plays.user_index, minlength=plays.n_users)
    assert degree.min() >= 1
    assert abs(degree.mean() - 40.0) / 40.0 < 0.1
    # Heavy tail: some users have several times the mean.
    assert degree.max() > 3 * degree.mean()


def test_popularity_is_skewed(plays: SyntheticPlays) -> None:
    listeners = np.sort(np.bincount(plays.artist_index, minlength=plays.n_artists))[::-1]
    top_share = listeners[: plays.n_artists // 100].sum() / listeners.sum()
    # Uniform popularity would give the top 1% of artists about 1% of the pairs.
    assert top_share > 0.08
    assert listeners[0] > 20 * np.median(listeners)


def test_play_counts_heavy_tailed(plays: SyntheticPlays) -> None:
    p = plays.plays.astype(np.float64)
    assert np.percentile(p, 99) > 10 * np.median(p)


def test_users_draw_mostly_from_their_genre(plays: SyntheticPlays) -> None:
    same = plays.artist_genre[plays.artist_index] == plays.user_genre[plays.user_index]
    # affinity 0.8 from the genre, plus the genre's share of the 20% drawn from everything; dedup and
    # per-user truncation shift it a little.
    expected = 0.8 + 0.2 / 12
    assert abs(same.mean() - expected) < 0.08


def test_names_unique_and_only_aliases_start_with_the(plays: SyntheticPlays) -> None:
    names = plays.artist_names
    assert len(set(names)) == len(names)
    assert all(name for name in names)
    aliases = set(plays.alias_pairs[:, 1].tolist())
    starts_the = {i for i, name in enumerate(names) if name.startswith("The ")}
    assert starts_the == aliases
    # No accidental alias: stripping "The " collides only for planted pairs.
    stripped = [name.removeprefix("The ") for name in names]
    assert len(set(stripped)) == len(names) - len(plays.alias_pairs)


def test_alias_pairs_same_genre_similar_audience_no_shared_listener(plays: SyntheticPlays) -> None:
    pairs = plays.alias_pairs
    assert pairs.shape == (25, 2) and pairs.dtype == np.int32
    assert len(np.unique(pairs)) == 2 * len(pairs)
    listeners = np.bincount(plays.artist_index, minlength=plays.n_artists)
    median = np.median(listeners)
    for canonical, alias in pairs.tolist():
        assert plays.artist_names[alias] == "The " + plays.artist_names[canonical]
        assert plays.artist_genre[alias] == plays.artist_genre[canonical]
        users_c = set(plays.user_index[plays.artist_index == canonical].tolist())
        users_a = set(plays.user_index[plays.artist_index == alias].tolist())
        assert users_c and users_a
        assert not users_c & users_a
        # Each name keeps about half of the act's audience (a 50/50 coin per listener).
        n = len(users_c) + len(users_a)
        assert abs(len(users_c) - n / 2) <= 4 * np.sqrt(n / 4) + 1
        assert n >= median


def test_to_csr_matches_triples(plays: SyntheticPlays) -> None:
    x = plays.to_csr()
    assert x.shape == (plays.n_users, plays.n_artists)
    assert x.dtype == np.float32
    assert x.nnz == plays.nnz
    coo = x.tocoo()
    np.testing.assert_array_equal(coo.row, plays.user_index)
    np.testing.assert_array_equal(coo.col, plays.artist_index)
    np.testing.assert_array_equal(coo.data, plays.plays.astype(np.float32))


def test_no_alias_pairs_and_single_genre() -> None:
    p = generate_plays(n_users=50, n_artists=80, artists_per_user=5, n_genres=1, n_alias_pairs=0, seed=1)
    assert p.alias_pairs.shape == (0, 2)
    assert not any(name.startswith("The ") for name in p.artist_names)
    assert np.all(p.artist_genre == 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_users": 0}, "n_users"),
        ({"n_artists": 1}, "n_artists"),
        ({"n_genres": 0}, "n_genres"),
        ({"n_alias_pairs": 1500}, "n_alias_pairs"),
        ({"artists_per_user": 0.5}, "artists_per_user"),
        ({"genre_affinity": 1.5}, "genre_affinity"),
    ],
)
def test_invalid_arguments_raise(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        generate_plays(**kwargs)
