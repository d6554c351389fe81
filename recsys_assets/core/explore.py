"""Looking at a model's artist factors: dot vs cosine neighbours, norm vs popularity, maps and heatmaps.

* :func:`dot_vs_cosine`: related lists of well-known artists under both scores, with the mean
  popularity of each list (dot products favour long vectors, and long vectors are popular artists).
* :func:`norm_popularity`: Spearman rank correlation of each artist's factor norm with its popularity;
  :func:`norm_popularity_png` draws the scatter per model.
* :func:`cosine_heatmap_png`: the cosine-similarity matrix of a chosen set of artists.
* :func:`tsne_map`: a 2-D t-SNE (cosine distance) of the most-played artists' factors, with
  :func:`tsne_html` (one self-contained page: inline SVG and script, no network: hover shows the name,
  colour by top tag, a search box) and :func:`tsne_png`. t-SNE comes from scikit-learn (the optional
  ``explore`` extra); everything else needs only numpy and matplotlib.

Charts use matplotlib ``Figure`` objects with the Agg canvas (see :mod:`recsys_assets.core.report`).
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np

from recsys_assets.core.report import _figure, _png
from recsys_assets.core.sections import PositiveInt, Range, Section, Seed
from recsys_assets.core.threads import resolve_threads

__all__ = [
    "ExploreError",
    "TsneMap",
    "cosine_heatmap_png",
    "dot_vs_cosine",
    "dot_vs_cosine_markdown",
    "most_played",
    "norm_popularity",
    "norm_popularity_png",
    "top_tags",
    "tsne_html",
    "tsne_map",
    "tsne_png",
]


class ArtistNames:
    """Rule of ``[explore] artists``: an array of non-empty artist names."""

    def admits(self, value: Any) -> bool:
        return all(isinstance(v, str) and v.strip() for v in value)

    def describe(self, kind: str) -> str:
        return "an array of artist names"


@dataclass(frozen=True)
class ExploreSettings(Section):
    """The "Exploring the factor space" section of the evaluation report."""

    TABLE: ClassVar[str] = "explore"

    # The cosine-similarity heatmap's artists (names as `recsys related` takes them); empty = the most
    # played `heatmap_size` artists.
    artists: Annotated[tuple, ArtistNames()] = ()
    heatmap_size: PositiveInt = 12
    # Well-known artists whose related lists are compared under dot and cosine scores.
    dot_vs_cosine_artists: PositiveInt = 3
    # The t-SNE map's most-played artists (the map needs scikit-learn: the `explore` extra).
    tsne_artists: Annotated[int, Range(ge=10)] = 500
    seed: Seed = 0

    def __post_init__(self) -> None:
        if isinstance(self.artists, list):  # TOML arrays arrive as lists
            object.__setattr__(self, "artists", tuple(self.artists))
        super().__post_init__()


class ExploreError(ValueError):
    """Inputs to an exploration (ids, shapes, sizes) are not usable."""


def _factors(item_factors: np.ndarray, popularity: np.ndarray | None = None) -> np.ndarray:
    Y = np.asarray(item_factors, dtype=np.float64)
    if Y.ndim != 2 or Y.shape[0] == 0:
        raise ExploreError(f"item_factors must be a non-empty 2-D array, got shape {Y.shape}")
    if popularity is not None and np.shape(popularity) != (Y.shape[0],):
        raise ExploreError(f"popularity must have shape ({Y.shape[0]},), got {np.shape(popularity)}")
    return Y


def _unit(Y: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(Y, axis=1, keepdims=True)
    return np.divide(Y, norms, out=np.zeros_like(Y), where=norms > 0)


def most_played(popularity: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` most popular artists, most popular first (ties: lower index first)."""
    popularity = np.asarray(popularity)
    return np.lexsort((np.arange(popularity.size), -popularity))[:n]


def _top(scores: np.ndarray, exclude: int, n: int) -> np.ndarray:
    scores = scores.copy()
    scores[exclude] = -np.inf
    order = np.lexsort((np.arange(scores.size), -scores))
    return order[:n]


def dot_vs_cosine(
    item_factors: np.ndarray, popularity: np.ndarray, queries: Sequence[int], n: int = 10
) -> list[dict]:
    """Related artists of each query by dot product and by cosine, with each list's mean popularity.

    Returns one dict per (query, method): ``query``, ``method`` (``"dot"`` / ``"cosine"``), ``related``
    (item ids, best first, the query excluded) and ``mean_popularity`` of the list.
    """
    Y = _factors(item_factors, popularity)
    popularity = np.asarray(popularity, dtype=np.float64)
    U = _unit(Y)
    rows = []
    for q in queries:
        if not 0 <= q < Y.shape[0]:
            raise ExploreError(f"query artist index {q} is outside 0..{Y.shape[0] - 1}")
        for method, scores in (("dot", Y @ Y[q]), ("cosine", U @ U[q])):
            related = _top(scores, int(q), n)
            rows.append(
                {
                    "query": int(q),
                    "method": method,
                    "related": related.tolist(),
                    "mean_popularity": float(popularity[related].mean()),
                }
            )
    return rows


def norm_popularity(item_factors: np.ndarray, popularity: np.ndarray) -> dict[str, float]:
    """Spearman rank correlation of factor norm and popularity over the artists (ties: average ranks).

    Returns ``spearman`` and ``n``; NaN when fewer than two artists or a side is constant.
    """
    from scipy.stats import spearmanr

    Y = _factors(item_factors, popularity)
    norms = np.linalg.norm(Y, axis=1)
    popularity = np.asarray(popularity, dtype=np.float64)
    if Y.shape[0] < 2 or np.ptp(norms) == 0 or np.ptp(popularity) == 0:
        return {"spearman": float("nan"), "n": float(Y.shape[0])}
    return {"spearman": float(spearmanr(norms, popularity).statistic), "n": float(Y.shape[0])}


def norm_popularity_png(models: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Scatter per model (one panel each) of factor norm against popularity (log x axis when positive);
    ``models`` maps a model name to ``(item_factors, popularity)``. The title carries Spearman's rho."""
    if not models:
        raise ExploreError("no models to plot")
    fig = _figure(figsize=(4.2 * len(models), 3.8), dpi=110)
    for k, (name, (factors, popularity)) in enumerate(models.items()):
        ax = fig.add_subplot(1, len(models), k + 1)
        norms = np.linalg.norm(_factors(factors, popularity), axis=1)
        popularity = np.asarray(popularity, dtype=np.float64)
        ax.scatter(popularity, norms, s=4, alpha=0.4, linewidths=0)
        if (popularity > 0).all():
            ax.set_xscale("log")
        rho = norm_popularity(factors, popularity)["spearman"]
        ax.set_title(f"{name}: Spearman rho = {rho:.3f}", fontsize=9)
        ax.set_xlabel("popularity (listeners)")
        ax.set_ylabel("factor norm")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def cosine_heatmap_png(
    item_factors: np.ndarray, ids: Sequence[int], names: Sequence[str], title: str = ""
) -> bytes:
    """Heatmap of the cosine similarities between the artists ``ids`` (labelled by ``names``)."""
    Y = _factors(item_factors)
    ids = list(ids)
    if len(ids) != len(names) or len(ids) < 2:
        raise ExploreError(
            f"need at least two artists and one name each, got {len(ids)} ids and {len(names)} names"
        )
    bad = [i for i in ids if not 0 <= i < Y.shape[0]]
    if bad:
        raise ExploreError(f"artist index {bad[0]} is outside 0..{Y.shape[0] - 1}")
    U = _unit(Y[ids])
    similarity = U @ U.T
    size = 1.5 + 0.45 * len(ids)
    fig = _figure(figsize=(size + 1.5, size), dpi=110)
    ax = fig.add_subplot()
    image = ax.imshow(similarity, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(ids)), names, rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(len(ids)), names, fontsize=7)
    if len(ids) <= 20:
        for i in range(len(ids)):
            for j in range(len(ids)):
                ax.text(j, i, f"{similarity[i, j]:.2f}", ha="center", va="center", fontsize=6)
    ax.set_title(title or "cosine similarity", fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return _png(fig)


@dataclass(frozen=True)
class TsneMap:
    """2-D positions (``coords``, float64 ``(n, 2)``) of the artists ``ids`` with their ``names`` and top
    ``tags`` (``None`` where unknown)."""

    ids: np.ndarray
    coords: np.ndarray
    names: list[str]
    tags: list[str | None]


def tsne_map(
    item_factors: np.ndarray,
    ids: Sequence[int],
    names: Sequence[str],
    tags: Sequence[str | None] | None = None,
    perplexity: float = 30.0,
    seed: int = 0,
    threads: int = 1,
) -> TsneMap:
    """t-SNE (scikit-learn, cosine distance, PCA initialisation, seeded) of the factors of ``ids``.

    ``perplexity`` is lowered to ``(n - 1) / 3`` for small sets (it must stay below ``n``). ``threads``
    as ``[runtime] threads`` reads it (0 = all cores; scikit-learn refuses ``n_jobs = 0``).
    """
    try:
        from sklearn.manifold import TSNE
    except ImportError as error:  # pragma: no cover - depends on the installed extras
        raise ExploreError("the t-SNE map needs scikit-learn: pip install 'recsys[explore]'") from error
    Y = _factors(item_factors)
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size < 4 or len(names) != ids.size or (tags is not None and len(tags) != ids.size):
        raise ExploreError(f"t-SNE needs at least 4 artists, one name (and tag) each; got {ids.size} ids")
    X = _unit(Y[ids])
    tsne = TSNE(
        n_components=2,
        metric="cosine",
        init="pca",
        perplexity=min(perplexity, (ids.size - 1) / 3),
        random_state=seed,
        n_jobs=resolve_threads(threads),
    )
    coords = tsne.fit_transform(X).astype(np.float64)
    return TsneMap(ids, coords, list(names), list(tags) if tags is not None else [None] * ids.size)


_PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#393b79",
]  # fmt: skip
_OTHER = "#b0b0b0"


def _colours(tags: list[str | None]) -> tuple[list[str], dict[str, str]]:
    """A colour per point: the ten most frequent tags get palette colours, the rest grey."""
    counts: dict[str, int] = {}
    for tag in tags:
        if tag:
            counts[tag] = counts.get(tag, 0) + 1
    top = sorted(counts, key=lambda t: (-counts[t], t))[: len(_PALETTE)]
    legend = {tag: _PALETTE[k] for k, tag in enumerate(top)}
    return [legend.get(tag or "", _OTHER) for tag in tags], legend


def tsne_html(tmap: TsneMap, title: str = "Artist map") -> str:
    """One self-contained HTML page (inline SVG and script, nothing fetched): a point per artist,
    hover shows name and tag, colour by top tag, a search box that highlights matching names."""
    colours, legend = _colours(tmap.tags)
    lo, hi = tmap.coords.min(axis=0), tmap.coords.max(axis=0)
    span = np.where(hi > lo, hi - lo, 1.0)
    xy = 20 + 760 * (tmap.coords - lo) / span
    points = [
        {"x": round(float(x), 1), "y": round(float(y), 1), "n": name, "t": tag or "", "c": colour}
        for (x, y), name, tag, colour in zip(xy, tmap.names, tmap.tags, colours, strict=True)
    ]
    # JSON inside <script>: escape "<" so no name can close the element.
    data = json.dumps(points, ensure_ascii=False).replace("<", "\\u003c")
    legend_html = "".join(
        f'<span><i style="background:{c}"></i>{html.escape(tag)}</span>' for tag, c in legend.items()
    )
    return _PAGE.format(title=html.escape(title), legend=legend_html, data=data, count=len(points))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px sans-serif; margin: 16px; }}
#map {{ border: 1px solid #ccc; background: #fff; }}
#tip {{ position: absolute; pointer-events: none; background: #222; color: #fff; padding: 3px 6px;
        border-radius: 3px; font-size: 12px; display: none; }}
.legend span {{ margin-right: 12px; white-space: nowrap; }}
.legend i {{ display: inline-block; width: 10px; height: 10px; margin-right: 4px; border-radius: 5px; }}
circle.hit {{ stroke: #000; stroke-width: 2; }}
</style></head><body>
<h2>{title}</h2>
<p>{count} artists; t-SNE of the factors (cosine). Hover a point for its name.
<input id="search" type="search" placeholder="find an artist" autocomplete="off"> <span id="found"></span></p>
<div class="legend">{legend}</div>
<svg id="map" width="800" height="800" viewBox="0 0 800 800"></svg>
<div id="tip"></div>
<script>
const points = {data};
const svg = document.getElementById("map"), tip = document.getElementById("tip");
const ns = "http://www.w3.org/2000/svg";
const circles = points.map(p => {{
  const c = document.createElementNS(ns, "circle");
  c.setAttribute("cx", p.x); c.setAttribute("cy", 800 - p.y); c.setAttribute("r", 4);
  c.setAttribute("fill", p.c); c.setAttribute("fill-opacity", 0.8);
  c.addEventListener("mousemove", e => {{
    tip.textContent = p.t ? p.n + " (" + p.t + ")" : p.n;
    tip.style.left = (e.pageX + 10) + "px"; tip.style.top = (e.pageY + 10) + "px";
    tip.style.display = "block";
  }});
  c.addEventListener("mouseleave", () => {{ tip.style.display = "none"; }});
  svg.appendChild(c);
  return c;
}});
document.getElementById("search").addEventListener("input", e => {{
  const q = e.target.value.trim().toLowerCase();
  let n = 0;
  circles.forEach((c, i) => {{
    const hit = q !== "" && points[i].n.toLowerCase().includes(q);
    c.classList.toggle("hit", hit);
    c.setAttribute("r", hit ? 8 : 4);
    if (hit) {{ n += 1; svg.appendChild(c); }}
  }});
  document.getElementById("found").textContent = q ? n + " found" : "";
}});
</script></body></html>
"""


def tsne_png(tmap: TsneMap, title: str = "Artist map (t-SNE, cosine)", label: int = 30) -> bytes:
    """Static scatter of the map, coloured like the HTML page, the first ``label`` artists named."""
    colours, legend = _colours(tmap.tags)
    fig = _figure(figsize=(8.0, 7.0), dpi=110)
    ax = fig.add_subplot()
    ax.scatter(tmap.coords[:, 0], tmap.coords[:, 1], c=colours, s=10, alpha=0.8, linewidths=0)
    for k in range(min(label, len(tmap.names))):
        ax.annotate(tmap.names[k], tmap.coords[k], fontsize=6, xytext=(2, 2), textcoords="offset points")
    for tag, colour in legend.items():
        ax.scatter([], [], c=colour, s=20, label=tag)
    if legend:
        ax.legend(fontsize=7, loc="best", markerscale=1.0)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return _png(fig)


def top_tags(
    artist_index: np.ndarray, tag_index: np.ndarray, tag_names: Sequence[str], n_artists: int
) -> list[str | None]:
    """Each artist's most often assigned tag (ties: the lower tag id), ``None`` for untagged artists.

    ``artist_index`` / ``tag_index`` are the (artist, tag) ids of the tag assignments, one per assignment.
    """
    import scipy.sparse as sp

    artist_index, tag_index = np.asarray(artist_index), np.asarray(tag_index)
    if artist_index.shape != tag_index.shape:
        raise ExploreError(f"artist_index {artist_index.shape} and tag_index {tag_index.shape} differ")
    counts = sp.csr_matrix(
        (np.ones(artist_index.size), (artist_index, tag_index)), shape=(n_artists, len(tag_names))
    )
    counts.sum_duplicates()
    out: list[str | None] = []
    for a in range(n_artists):
        start, end = counts.indptr[a], counts.indptr[a + 1]
        if start == end:
            out.append(None)
            continue
        values, tags = counts.data[start:end], counts.indices[start:end]
        best = tags[np.lexsort((tags, -values))[0]]
        out.append(str(tag_names[best]))
    return out


def dot_vs_cosine_markdown(rows: list[dict], names: Sequence[str], model: str = "") -> str:
    """Markdown table of :func:`dot_vs_cosine` rows: query, method, mean popularity, the related names."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    prefix = "| model " if model else ""
    lines = [
        prefix + "| artist | score | mean popularity | related |",
        ("|---" if model else "") + "|---|---|---:|---|",
    ]
    for row in rows:
        related = ", ".join(cell(names[i]) for i in row["related"])
        lead = f"| {cell(model)} " if model else ""
        lines.append(
            lead
            + f"| {cell(names[row['query']])} | {row['method']} | {row['mean_popularity']:.1f} | {related} |"
        )
    return "\n".join(lines) + "\n"
