"""The evaluation report's "Exploring the factor space" section: dot vs cosine related lists, factor norm
vs popularity, a cosine heatmap of chosen artists and a t-SNE map (when scikit-learn is installed), for
every model's factors."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_assets.core import explore
from recsys_assets.core.factorset import FactorSet
from recsys_assets.settings import ExploreSettings

TSNE_FILE = "artist_map_{model}.html"


@dataclass
class Exploration:
    """``html``: the report section; ``markdown``: name -> markdown for the asset's metadata (PNG as data
    URLs); ``values``: plain metadata (Spearman per model); ``pages``: file name -> a self-contained
    t-SNE HTML page to write next to the report."""

    html: str
    markdown: dict[str, str] = field(default_factory=dict)
    values: dict[str, Any] = field(default_factory=dict)
    pages: dict[str, str] = field(default_factory=dict)


def _img(png: bytes, alt: str) -> tuple[str, str]:
    data = base64.b64encode(png).decode("ascii")
    return (
        f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">',
        f"![{alt}](data:image/png;base64,{data})",
    )


def _normal(name: str) -> str:
    return re.sub(r"^the\s+", "", " ".join(name.lower().split()))


def chosen_artists(
    wanted: tuple[str, ...], names: list[str], popularity: np.ndarray, size: int
) -> tuple[list[int], list[str]]:
    """Ids of the ``[explore] artists`` found among ``names`` (case-insensitive, a leading "The" ignored,
    the most popular of several matches), and the names not found; the ``size`` most played when
    ``wanted`` is empty."""
    if not wanted:
        return [int(i) for i in explore.most_played(popularity, size)], []
    best: dict[str, int] = {}
    for i, name in enumerate(names):
        key = _normal(name or "")
        if key not in best or popularity[i] > popularity[best[key]]:
            best[key] = i
    found = [best[_normal(n)] for n in wanted if _normal(n) in best]
    return list(dict.fromkeys(found)), [n for n in wanted if _normal(n) not in best]


def explore_factors(
    fitted: list[FactorSet],
    train: sp.csr_matrix,
    names: list[str],
    tags: list[str | None] | None,
    settings: ExploreSettings,
    threads: int,
) -> Exploration:
    """The section for the ``fitted`` factor sets; popularity = listeners per artist in ``train``."""
    popularity = np.diff(sp.csc_matrix(train).indptr).astype(np.float64)
    parts: list[str] = []
    out = Exploration(html="")
    queries = explore.most_played(popularity, settings.dot_vs_cosine_artists)
    parts.append(
        "<h3>Dot vs cosine</h3><p>Related artists of the most played artists under both scores; dot "
        "products favour long vectors, which belong to popular artists (mean listeners of each list).</p>"
    )
    for factors in fitted:
        rows = explore.dot_vs_cosine(factors.item_factors, popularity, queries)
        table = explore.dot_vs_cosine_markdown(rows, names, model=factors.model)
        out.markdown[f"dot_vs_cosine_{factors.model}"] = table
        parts.append(f"<pre>{html.escape(table)}</pre>")
    scatter = explore.norm_popularity_png({f.model: (f.item_factors, popularity) for f in fitted})
    tag, md = _img(scatter, "factor norm vs popularity")
    parts += ["<h3>Factor norm vs popularity</h3>", tag]
    out.markdown["norm_vs_popularity"] = md
    for factors in fitted:
        rho = explore.norm_popularity(factors.item_factors, popularity)["spearman"]
        out.values[f"norm_popularity_spearman_{factors.model}"] = rho
        parts.append(f"<p>{html.escape(factors.model)}: Spearman rho = {rho:.3f}</p>")
    ids, missing = chosen_artists(settings.artists, names, popularity, settings.heatmap_size)
    parts.append("<h3>Cosine similarity of chosen artists</h3>")
    if missing:
        parts.append(f"<p>Not in the catalogue: {html.escape(', '.join(missing))}</p>")
    if len(ids) >= 2:
        for factors in fitted:
            png = explore.cosine_heatmap_png(
                factors.item_factors,
                ids,
                [names[i] for i in ids],
                title=f"{factors.model}: cosine similarity",
            )
            tag, md = _img(png, f"{factors.model} cosine heatmap")
            parts.append(tag)
            out.markdown[f"cosine_heatmap_{factors.model}"] = md
    else:
        parts.append("<p>Fewer than two of the [explore] artists are in the catalogue.</p>")
    parts.append("<h3>Artist map (t-SNE)</h3>")
    try:
        import sklearn  # noqa: F401
    except ImportError:
        parts.append("<p>The t-SNE map needs scikit-learn (pip install 'recsys[explore]').</p>")
    else:
        top = explore.most_played(popularity, min(settings.tsne_artists, len(names)))
        for factors in fitted:
            tmap = explore.tsne_map(
                factors.item_factors,
                top,
                [names[i] for i in top],
                None if tags is None else [tags[i] for i in top],
                seed=settings.seed,
                threads=threads,
            )
            page = TSNE_FILE.format(model=factors.model)
            out.pages[page] = explore.tsne_html(tmap, title=f"Artist map: {factors.model}")
            tag, md = _img(explore.tsne_png(tmap, title=f"{factors.model}: t-SNE (cosine)"), "artist map")
            parts += [
                f'<p><a href="{html.escape(page)}">Interactive map ({html.escape(factors.model)})</a></p>',
                tag,
            ]
            out.markdown[f"tsne_{factors.model}"] = md
    out.html = "\n".join(parts)
    return out
