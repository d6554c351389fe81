"""Deterministic, Last.fm-shaped synthetic play counts with planted structure.

The generator plants three things a recommender should find or survive:

* **genres** — every user has a main genre and draws ``genre_affinity`` of their artists from it, so
  artists of one genre share listeners (related-artist quality can be checked against the genre);
* **Zipf popularity** — artist draw probability is ``(rank + 10) ** -0.8`` for a random rank, so a
  few artists reach a large share of users and most artists few (the long tail of Last.fm);
* **aliases** — an "act" published under two names, ``X`` and ``The X``: both names have the same
  genre and about the same audience size, but every listener of the act uses exactly one of the names,
  so the two never share a listener (collaborative filtering cannot link them; only names can).

Everything is vectorised numpy (sorts and ``searchsorted``), so 360K users x 300K artists x 17.5M
plays take seconds, not minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

# Popularity weight of the act of rank r (1-based) is (r + _ZIPF_OFFSET) ** -_ZIPF_EXPONENT: at 300K
# artists the most popular artist reaches roughly 10-20% of users, close to Last.fm-360K's top artist.
_ZIPF_EXPONENT = 0.8
_ZIPF_OFFSET = 10.0
# Artists per user ~ lognormal with this log-sd (heavy tail; the mean is set by artists_per_user).
_DEGREE_LOG_SD = 0.7
# Draws with replacement are deduplicated, so draw more than needed: k * factor + extra per user.
_OVERSAMPLE_FACTOR = 1.6
_OVERSAMPLE_EXTRA = 8
# Plays = ceil(exp(user level + pair noise)), with a boost for in-genre artists (users play their
# favourite genre more): median around 60 plays, a tail into the tens of thousands.
_PLAYS_USER_LOG_MEAN = 3.5
_PLAYS_USER_LOG_SD = 0.8
_PLAYS_PAIR_LOG_SD = 1.1
_PLAYS_IN_GENRE_LOG_BOOST = 0.5
_PLAYS_MAX = 1_000_000

_ONSETS = np.array(
    list("bcdfghjklmnprstvwz")
    + ["br", "bl", "ch", "cr", "dr", "fl", "fr", "gl", "gr", "kr", "pl"]
    + ["pr", "qu", "sh", "sk", "sl", "sn", "sp", "st", "str", "th", "tr"]
)
_VOWELS = np.array(["a", "e", "i", "o", "u", "ai", "ea", "ee", "oo", "ou", "y"])
_CODAS = np.array(["", "", "", "n", "r", "s", "l", "x", "ck", "nd", "st", "m", "rk", "ng"])
_PREFIXES = ["DJ ", "MC ", "Lil ", "Dr. ", "Los ", "Les "]
_SUFFIXES = [" Band", " Trio", " Quartet", " Orchestra", " Project", " Collective", " Crew", " Ensemble"]


@dataclass(frozen=True)
class SyntheticPlays:
    """Synthetic user-artist play counts, one entry per (user, artist) pair, sorted by (user, artist).

    Attributes:
        user_index: int32 (nnz,), dense user ids in ``0..n_users-1``.
        artist_index: int32 (nnz,), dense artist ids in ``0..n_artists-1``.
        plays: int32 (nnz,), play counts >= 1 (heavy-tailed).
        n_users, n_artists: matrix shape.
        artist_names: ``n_artists`` unique names; no name starts with "The " except planted aliases.
        artist_genre: int32 (n_artists,), planted genre of each artist.
        user_genre: int32 (n_users,), main genre of each user.
        alias_pairs: int32 (n_pairs, 2), rows (canonical artist, alias artist) where
            ``artist_names[alias] == "The " + artist_names[canonical]``; the two share no listener.
    """

    user_index: np.ndarray
    artist_index: np.ndarray
    plays: np.ndarray
    n_users: int
    n_artists: int
    artist_names: list[str]
    artist_genre: np.ndarray
    user_genre: np.ndarray
    alias_pairs: np.ndarray

    @property
    def nnz(self) -> int:
        """Number of (user, artist) pairs."""
        return int(self.plays.shape[0])

    def to_csr(self) -> sp.csr_matrix:
        """The play counts as a float32 CSR matrix of shape (n_users, n_artists), sorted indices."""
        indptr = np.zeros(self.n_users + 1, dtype=np.int64)
        np.cumsum(np.bincount(self.user_index, minlength=self.n_users), out=indptr[1:])
        return sp.csr_matrix(
            (self.plays.astype(np.float32), self.artist_index.copy(), indptr),
            shape=(self.n_users, self.n_artists),
        )


def _artist_names(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` unique artist-like names built from random syllables; none starts with "The "."""
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        batch = max(1024, int((n - len(names)) * 1.2))
        words = []
        # Two word pools of 1-3 syllables; capitalised pseudo-words such as "Brailon" or "Skoo".
        for _ in range(2):
            n_syll = rng.integers(1, 4, size=batch)
            word = np.char.add(rng.choice(_ONSETS, batch), rng.choice(_VOWELS, batch))
            for extra in (2, 3):
                more = np.char.add(rng.choice(_ONSETS, batch), rng.choice(_VOWELS, batch))
                word = np.where(n_syll >= extra, np.char.add(word, more), word)
            word = np.char.add(word, rng.choice(_CODAS, batch))
            words.append(np.char.capitalize(word).tolist())
        form = rng.random(batch)
        prefix = rng.integers(0, len(_PREFIXES), size=batch)
        suffix = rng.integers(0, len(_SUFFIXES), size=batch)
        for i in range(batch):
            w1, w2, f = words[0][i], words[1][i], form[i]
            if f < 0.35:
                name = w1
            elif f < 0.65:
                name = f"{w1} {w2}"
            elif f < 0.75:
                name = f"{w1} & the {w2}s"
            elif f < 0.85:
                name = _PREFIXES[prefix[i]] + w1
            else:
                name = w1 + _SUFFIXES[suffix[i]]
            # "The" can come out of the syllables; such a name would look like a planted alias.
            if name not in seen and name.split(" ", 1)[0] != "The":
                seen.add(name)
                names.append(name)
                if len(names) == n:
                    break
    return names


def _validate(
    n_users: int,
    n_artists: int,
    artists_per_user: float,
    n_genres: int,
    n_alias_pairs: int,
    genre_affinity: float,
) -> None:
    if n_users < 1 or n_artists < 2:
        raise ValueError(f"need n_users >= 1 and n_artists >= 2, got {n_users} and {n_artists}")
    if not 1 <= n_genres <= n_artists:
        raise ValueError(f"n_genres must be in 1..n_artists ({n_artists}), got {n_genres}")
    if n_alias_pairs < 0 or n_artists - 2 * n_alias_pairs < n_genres:
        raise ValueError(
            f"n_alias_pairs={n_alias_pairs} must be >= 0 and leave at least n_genres={n_genres} "
            f"non-alias artists out of n_artists={n_artists}"
        )
    if not artists_per_user >= 1.0:
        raise ValueError(f"artists_per_user must be >= 1, got {artists_per_user}")
    if not 0.0 <= genre_affinity <= 1.0:
        raise ValueError(f"genre_affinity must be in [0, 1], got {genre_affinity}")


def generate_plays(
    n_users: int = 2000,
    n_artists: int = 3000,
    artists_per_user: float = 50.0,
    n_genres: int = 12,
    n_alias_pairs: int = 20,
    genre_affinity: float = 0.8,
    seed: int = 0,
) -> SyntheticPlays:
    """Generate Last.fm-shaped play counts (deterministic for a given ``seed`` and arguments).

    Model: ``n_artists - n_alias_pairs`` acts, each with a uniform random genre and a Zipf weight
    ``w = (rank + 10) ** -0.8``. User ``u`` gets a main genre and a target degree
    ``k_u = max(1, round(lognormal))`` with mean ``artists_per_user``; they draw acts i.i.d. — with
    probability ``genre_affinity`` from their genre (proportional to ``w``), otherwise from all acts —
    and keep the first ``k_u`` distinct ones (fewer only when the draws run out, which happens for
    users whose ``k_u`` approaches the catalogue size). ``n_alias_pairs`` acts from the most popular
    tenth get a second name; each listener of such an act uses one of the two names (a fair coin).
    Plays are ``ceil(exp(N(mu_u, 1.1) + 0.5 * in_genre))`` clipped to 1..1e6.

    Returns:
        SyntheticPlays with unique (user, artist) pairs sorted by user then artist.
    """
    _validate(n_users, n_artists, artists_per_user, n_genres, n_alias_pairs, genre_affinity)
    rng = np.random.default_rng(seed)
    n_acts = n_artists - n_alias_pairs

    # Acts sorted by genre so each genre is one contiguous slice of the cumulative weight.
    act_genre = np.sort(rng.integers(0, n_genres, size=n_acts)).astype(np.int32)
    act_genre[:n_genres] = np.arange(n_genres)  # every genre owns at least one act
    act_genre.sort()
    rank = rng.permutation(n_acts).astype(np.float64) + 1.0
    weight = (rank + _ZIPF_OFFSET) ** -_ZIPF_EXPONENT
    cum = np.concatenate(([0.0], np.cumsum(weight)))
    genre_start = np.searchsorted(act_genre, np.arange(n_genres + 1))
    genre_lo, genre_hi = cum[genre_start[:-1]], cum[genre_start[1:]]

    user_genre = rng.integers(0, n_genres, size=n_users).astype(np.int32)
    # Lognormal with mean artists_per_user: mu = log(mean) - sd^2 / 2.
    log_mu = np.log(artists_per_user) - _DEGREE_LOG_SD**2 / 2
    degree = np.exp(rng.normal(log_mu, _DEGREE_LOG_SD, size=n_users))
    degree = np.clip(np.rint(degree), 1, n_acts).astype(np.int64)

    # I.i.d. draws, laid out user by user; draw position within a user is its draw order.
    n_draws = np.ceil(degree * _OVERSAMPLE_FACTOR).astype(np.int64) + _OVERSAMPLE_EXTRA
    draw_start = np.concatenate(([0], np.cumsum(n_draws)))
    total = int(draw_start[-1])
    draw_user = np.repeat(np.arange(n_users, dtype=np.int64), n_draws)
    in_genre = rng.random(total) < genre_affinity
    g = user_genre[draw_user]
    lo = np.where(in_genre, genre_lo[g], 0.0)
    hi = np.where(in_genre, genre_hi[g], cum[-1])
    del g
    u01 = rng.random(total)
    act = np.searchsorted(cum, lo + u01 * (hi - lo), side="right") - 1
    del lo, hi, u01
    np.clip(act, 0, n_acts - 1, out=act)

    # Keep the first occurrence of each (user, act) in draw order. Everything a step needs is packed
    # into one int64 key and sorted with np.sort (about twice as fast as argsort + gathers, and
    # deterministic): key = ((user * n_acts + act) * max_pos + position) * 2 + in_genre.
    max_pos = int(n_draws.max())
    if n_users * n_acts * 2 * max_pos >= 2**63:
        raise ValueError(
            f"n_users={n_users} x n_artists={n_artists} is too large for the generator's int64 keys; "
            "lower n_users, n_artists or artists_per_user"
        )
    pos = np.arange(total, dtype=np.int64) - draw_start[draw_user]
    key = ((draw_user * n_acts + act) * max_pos + pos) * 2 + in_genre
    del act, pos, in_genre, draw_user
    key.sort()
    pair = key // (2 * max_pos)
    first = np.empty(total, dtype=bool)
    first[0] = True
    np.not_equal(pair[1:], pair[:-1], out=first[1:])
    key, pair = key[first], pair[first]
    del first
    user = pair // n_acts
    pos_genre = key - pair * (2 * max_pos)  # position * 2 + in_genre
    act = pair - user * n_acts
    del key, pair

    # Rank each user's distinct acts by draw position and keep the first degree[u]:
    # key = ((user * max_pos + position) * 2 + in_genre) * n_acts + act.
    key = (user * (2 * max_pos) + pos_genre) * n_acts + act
    del user, pos_genre, act
    key.sort()
    user = key // (2 * max_pos * n_acts)
    starts = np.searchsorted(user, np.arange(n_users))
    keep = np.arange(user.shape[0]) - starts[user] < degree[user]
    key, user = key[keep], user[keep]
    del keep
    act = key % n_acts
    in_genre = (key // n_acts) % 2
    del key

    # Acts -> artists: act i is artist i; the last n_alias_pairs artists are aliases of a popular-ish act.
    # Canonical acts come from the top tenth by popularity so each name keeps a real audience.
    by_popularity = np.argsort(rank)
    head = by_popularity[: max(2 * n_alias_pairs, n_acts // 10)]
    canonical_act = np.sort(rng.choice(head, size=n_alias_pairs, replace=False))
    alias_of_act = np.full(n_acts, -1, dtype=np.int64)
    alias_of_act[canonical_act] = n_acts + np.arange(n_alias_pairs)
    alias_target = alias_of_act[act]
    to_alias = (alias_target >= 0) & (rng.random(act.shape[0]) < 0.5)
    artist = np.where(to_alias, alias_target, act)
    del alias_target, to_alias, act

    # Shuffle artist ids so genre, popularity and alias status are not visible in the id.
    perm = rng.permutation(n_artists)
    artist = perm[artist]
    artist_genre = np.empty(n_artists, dtype=np.int32)
    artist_genre[perm[:n_acts]] = act_genre
    artist_genre[perm[n_acts:]] = act_genre[canonical_act]
    alias_pairs = np.stack([perm[canonical_act], perm[n_acts:]], axis=1).astype(np.int32)

    names = _artist_names(rng, n_acts)
    artist_names = [""] * n_artists
    for i, a in enumerate(perm[:n_acts].tolist()):
        artist_names[a] = names[i]
    for c, a in alias_pairs.tolist():
        artist_names[a] = "The " + artist_names[c]

    # Final order (user, artist), in_genre riding along in the low bit.
    key = (user * n_artists + artist) * 2 + in_genre
    del user, artist, in_genre
    key.sort()
    in_genre = key % 2
    pair = key // 2
    del key
    user = (pair // n_artists).astype(np.int32)
    artist = (pair % n_artists).astype(np.int32)
    del pair

    level = rng.normal(_PLAYS_USER_LOG_MEAN, _PLAYS_USER_LOG_SD, size=n_users)
    log_plays = level[user] + _PLAYS_PAIR_LOG_SD * rng.standard_normal(user.shape[0])
    log_plays += _PLAYS_IN_GENRE_LOG_BOOST * in_genre
    plays = np.clip(np.ceil(np.exp(log_plays)), 1, _PLAYS_MAX).astype(np.int32)
    del log_plays, in_genre

    return SyntheticPlays(
        user_index=user,
        artist_index=artist,
        plays=plays,
        n_users=n_users,
        n_artists=n_artists,
        artist_names=artist_names,
        artist_genre=artist_genre,
        user_genre=user_genre,
        alias_pairs=alias_pairs,
    )
