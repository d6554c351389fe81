import base64
import re

import numpy as np
import pytest

from recsys_assets.core.report import (
    ReportError,
    html_report,
    loss_curve_png,
    metrics_chart_png,
    metrics_markdown,
    related_tag_similarity,
    tag_profiles,
)
from tests.conftest import HETREC_DIR

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
HETREC = HETREC_DIR  # ../shared beside the repository, as CI lays it out


def _rows():
    values = {
        "als": [0.165, 0.085, 0.93],
        "popularity": [0.078, 0.031, 0.85],
        "ran|dom": [0.001, 0.0004, 0.5],
    }
    rows = []
    for model, vals in values.items():
        for (metric, k), v in zip([("precision", 10), ("map", 10), ("auc", None)], vals, strict=True):
            rows.append({"model": model, "metric": metric, "k": k, "value": v})
    return rows


def test_markdown_has_every_model_and_metric():
    md = metrics_markdown(_rows()[:-1])  # drop random's auc: shown as a dash
    lines = md.strip().splitlines()
    assert lines[0] == "| model | precision@10 | map@10 | auc |"
    assert len(lines) == 2 + 3
    assert lines[2] == "| als | 0.1650 | 0.0850 | 0.9300 |"
    assert lines[3] == "| popularity | 0.0780 | 0.0310 | 0.8500 |"
    assert lines[4] == "| ran\\|dom | 0.0010 | 0.0004 | – |"


def test_bad_rows_raise():
    with pytest.raises(ReportError, match="lacks"):
        metrics_markdown([{"model": "als", "value": 1.0}])
    with pytest.raises(ReportError, match="no metric rows"):
        metrics_chart_png([])
    with pytest.raises(ReportError, match="no loss"):
        loss_curve_png({"als": []})


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == PNG_SIGNATURE
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_charts_are_pngs_of_sane_size():
    chart = metrics_chart_png(_rows())
    width, height = _png_size(chart)
    assert 400 <= width <= 3000 and 300 <= height <= 2000
    assert 5_000 < len(chart) < 2_000_000
    loss = loss_curve_png({"als": [10.0, 5.0, 4.0], "implicit": [10.5, 5.1, 4.0]})
    width, height = _png_size(loss)
    assert 400 <= width <= 3000 and 300 <= height <= 2000


def test_html_report_is_self_contained():
    page = html_report(
        "Eval <run>",
        _rows(),
        {"als": [3.0, 2.0, 1.5]},
        {"related artists": [{"artist": "Röyksopp", "related": "Air", "score": 0.91}]},
        "2026-11-01 12:00 UTC",
    )
    assert "<title>Eval &lt;run&gt;</title>" in page
    assert "<th>precision@10</th>" in page and "<td>0.1650</td>" in page and "ran|dom" in page
    assert "<h2>related artists</h2>" in page and "Röyksopp" in page and "<td>0.9100</td>" in page
    images = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2
    for image in images:
        assert base64.b64decode(image)[:8] == PNG_SIGNATURE
    assert "http" not in re.sub(r"data:image/png;base64,[^\"]+", "", page)  # nothing to fetch
    no_loss = html_report("t", _rows(), {}, {}, "now")
    assert len(re.findall("data:image/png", no_loss)) == 1


def _dense_profiles(artists, tags, n_artists, n_tags, tfidf):
    P = np.zeros((n_artists, n_tags))
    for a, t in zip(artists, tags, strict=True):
        P[a, t] += 1
    if tfidf:
        tagged = (P.sum(axis=1) > 0).sum()
        df = (P > 0).sum(axis=0)
        with np.errstate(divide="ignore"):
            P = P * np.where(df > 0, np.log(tagged / np.maximum(df, 1)), 0)
    norms = np.linalg.norm(P, axis=1, keepdims=True)
    return np.divide(P, norms, out=np.zeros_like(P), where=norms > 0)


@pytest.mark.parametrize("tfidf", [False, True])
def test_tag_profiles_and_similarity_match_slow_reference(tfidf):
    rng = np.random.default_rng(0)
    n_artists, n_tags = 30, 12
    artists = rng.integers(0, 25, size=300)  # artists 25..29 have no tags
    tags = rng.integers(0, n_tags, size=300)
    profiles = tag_profiles(artists, tags, n_artists, n_tags, tfidf=tfidf)
    dense = _dense_profiles(artists, tags, n_artists, n_tags, tfidf)
    np.testing.assert_allclose(profiles.toarray(), dense, rtol=1e-6, atol=1e-7)
    assert profiles.dtype == np.float32 and profiles.shape == (n_artists, n_tags)

    queries = np.array([0, 3, 26, 7, 9])
    related = rng.integers(0, n_artists, size=(5, 4))
    related[1, 2:] = -1
    related[4, :] = -1  # no related artists: skipped
    expected = []
    for q, rel in zip(queries, related, strict=True):
        rel = rel[rel >= 0]
        if dense[q].any() and rel.size:
            expected.append(np.mean([dense[q] @ dense[r] for r in rel]))
    got = related_tag_similarity(queries, related, profiles)
    assert got == pytest.approx(np.mean(expected), rel=1e-5)
    assert np.isnan(related_tag_similarity(np.array([26]), np.array([[0, 1]]), profiles))


def test_similarity_input_checks():
    profiles = tag_profiles(np.array([0, 1]), np.array([0, 0]), 2, 1)
    with pytest.raises(ReportError, match="related"):
        related_tag_similarity(np.array([0, 1]), np.array([[1]]), profiles)
    with pytest.raises(ReportError, match="ids"):
        tag_profiles(np.array([0, 5]), np.array([0, 0]), 2, 1)


@pytest.mark.skipif(
    not (HETREC / "user_taggedartists.dat").exists(), reason="HetRec Last.fm-2k not available"
)
def test_hetrec_tag_profiles_separate_self_from_random():
    table = np.loadtxt(HETREC / "user_taggedartists.dat", skiprows=1, usecols=(1, 2), dtype=np.int64)
    artists, tags = table[:, 0], table[:, 1]
    profiles = tag_profiles(artists, tags, artists.max() + 1, tags.max() + 1, tfidf=True)
    tagged = np.flatnonzero(np.diff(profiles.indptr))
    norms = np.sqrt(np.asarray(profiles.multiply(profiles).sum(axis=1)).ravel())
    np.testing.assert_allclose(norms[tagged], 1.0, rtol=1e-5)
    rng = np.random.default_rng(1)
    queries = rng.choice(tagged, size=500, replace=False)
    assert related_tag_similarity(queries, queries[:, None], profiles) == pytest.approx(1.0, rel=1e-5)
    shuffled = rng.choice(tagged, size=(500, 10))
    assert related_tag_similarity(queries, shuffled, profiles) < 0.2
