"""Factor-space exploration: dot vs cosine, norm vs popularity, heatmaps and the t-SNE map."""

from __future__ import annotations

import re

import numpy as np
import pytest

from recsys_assets.core.explore import (
    ExploreError,
    cosine_heatmap_png,
    dot_vs_cosine,
    most_played,
    norm_popularity,
    norm_popularity_png,
    tsne_html,
    tsne_map,
    tsne_png,
)


def _clusters(seed=0, per=30, groups=3, f=8):
    """Three tight directions in factor space; within a cluster the norm grows with popularity."""
    rng = np.random.default_rng(seed)
    centres = np.eye(f)[:groups] * 1.0
    Y, popularity, group = [], [], []
    for g in range(groups):
        pop = rng.integers(1, 1000, per)
        vectors = centres[g] + 0.05 * rng.standard_normal((per, f))
        Y.append(vectors * (0.5 + pop[:, None] / 1000))
        popularity.append(pop)
        group += [g] * per
    return np.vstack(Y), np.concatenate(popularity).astype(float), np.array(group)


def test_dot_lists_are_more_popular_than_cosine_lists():
    Y, pop, _ = _clusters()
    # a tiny, unpopular artist right on a cluster axis: cosine finds its cluster, dot finds the biggest
    queries = [int(i) for i in np.argsort(pop)[:5]]
    rows = dot_vs_cosine(Y, pop, queries, n=5)
    assert len(rows) == 10
    for q in queries:
        dot, cos = (next(r for r in rows if r["query"] == q and r["method"] == m) for m in ("dot", "cosine"))
        assert q not in dot["related"] and q not in cos["related"]
        assert dot["mean_popularity"] == pytest.approx(pop[dot["related"]].mean())
        assert dot["mean_popularity"] >= cos["mean_popularity"]
        # dot = the largest y_j . y_q, computed by brute force
        expected = sorted((j for j in range(len(Y)) if j != q), key=lambda j: -(Y[j] @ Y[q]))[:5]
        assert dot["related"] == expected
    with pytest.raises(ExploreError, match="outside"):
        dot_vs_cosine(Y, pop, [len(Y)])


def test_norm_popularity_spearman_by_hand():
    Y = np.array([[1.0, 0.0], [0.0, 3.0], [2.0, 0.0], [0.0, 4.0]])  # norms 1, 3, 2, 4
    pop = np.array([10.0, 20.0, 30.0, 40.0])
    # ranks (1, 3, 2, 4) vs (1, 2, 3, 4): sum d^2 = 2, rho = 1 - 6 * 2 / (4 * 15) = 0.8
    assert norm_popularity(Y, pop)["spearman"] == pytest.approx(0.8)
    assert np.isnan(norm_popularity(Y, np.ones(4))["spearman"])
    assert most_played(np.array([5, 9, 9, 1]), 3).tolist() == [1, 2, 0]


def test_pngs_are_drawn():
    Y, pop, _ = _clusters()
    assert norm_popularity_png({"als": (Y, pop), "lsa": (Y * 2, pop)}).startswith(b"\x89PNG")
    names = [f"artist {i}" for i in range(5)]
    assert cosine_heatmap_png(Y, [0, 1, 30, 31, 60], names).startswith(b"\x89PNG")
    with pytest.raises(ExploreError, match="one name each"):
        cosine_heatmap_png(Y, [0, 1], ["a"])


def test_tsne_keeps_clusters_apart_and_the_page_works_offline():
    Y, pop, group = _clusters()
    ids = most_played(pop, 60)
    names = [f"Artist <{i}> & co" for i in ids]
    tags = [["rock", "jazz", None][group[i]] for i in ids]
    tmap = tsne_map(Y, ids, names, tags, seed=0)
    assert tmap.coords.shape == (60, 2)
    # every point's nearest neighbour on the map is from its own cluster
    d = np.linalg.norm(tmap.coords[:, None] - tmap.coords[None], axis=2)
    np.fill_diagonal(d, np.inf)
    assert (group[ids][d.argmin(axis=1)] == group[ids]).mean() == 1.0
    page = tsne_html(tmap, title="map")
    assert page.startswith("<!DOCTYPE html>")
    # nothing is fetched: no external script, stylesheet or image
    assert not re.search(r"(src|href)\s*=", page) and "https://" not in page
    assert 'type="search"' in page and "mousemove" in page
    # names reach the page as JSON with "<" escaped, so no name can end the script
    assert "Artist \\u003c" in page and f"<{ids[0]}>" not in page
    assert "rock" in page and "jazz" in page
    assert tsne_png(tmap).startswith(b"\x89PNG")
    again = tsne_map(Y, ids, names, tags, seed=0)
    np.testing.assert_array_equal(again.coords, tmap.coords)
    # [runtime] threads = 0 (all cores, the default) reaches scikit-learn as a valid n_jobs; the
    # thread count changes only the exact neighbour search, not the map.
    every_core = tsne_map(Y, ids, names, tags, seed=0, threads=0)
    np.testing.assert_array_equal(every_core.coords, tmap.coords)


def test_top_tags_and_the_markdown_table():
    from recsys_assets.core.explore import dot_vs_cosine_markdown, top_tags

    # artist 0: rock x2, jazz x1; artist 1: jazz, pop (tie -> lower id: jazz); artist 2: untagged
    got = top_tags(np.array([0, 0, 0, 1, 1]), np.array([0, 0, 1, 1, 2]), ["rock", "jazz", "pop"], 3)
    assert got == ["rock", "jazz", None]
    Y, pop, _ = _clusters()
    names = [f"A|{i}" for i in range(len(Y))]
    table = dot_vs_cosine_markdown(dot_vs_cosine(Y, pop, [0], n=3), names, model="als")
    lines = table.strip().splitlines()
    assert len(lines) == 4 and lines[2].startswith("| als | A\\|0 | dot |")
