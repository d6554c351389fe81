"""Evaluation report rendering (markdown, PNG charts, one self-contained HTML page) and tag similarity.

Charts are drawn on matplotlib ``Figure`` objects with the Agg canvas, never through ``pyplot``, so no
global figure state is touched and the functions are safe to call from any thread or process.

Metric rows are dicts ``{"model": str, "metric": str, "k": int | None, "value": float}``; the column of
a row is ``"metric@k"`` (or ``"metric"`` when ``k`` is None). Models and columns keep their order of first
appearance.
"""

from __future__ import annotations

import base64
import html
import io
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.sparse import canonical_csr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "ReportError",
    "below_baseline",
    "html_report",
    "loss_curve_png",
    "metrics_chart_png",
    "metrics_markdown",
    "provenance_rows",
    "report_markdown",
    "related_tag_similarity",
    "tag_profiles",
]


class ReportError(ValueError):
    """Report inputs are malformed (missing keys, empty data, inconsistent shapes)."""


def _table(rows: list[dict]) -> tuple[list[str], list[str], dict[tuple[str, str], float]]:
    """Models, columns and ``{(model, column): value}`` from metric rows (the last duplicate wins)."""
    models: dict[str, None] = {}
    columns: dict[str, None] = {}
    values: dict[tuple[str, str], float] = {}
    for row in rows:
        missing = {"model", "metric", "value"} - row.keys()
        if missing:
            raise ReportError(f"metric row {row!r} lacks {sorted(missing)}")
        k = row.get("k")
        column = str(row["metric"]) if k is None else f"{row['metric']}@{k}"
        model = str(row["model"])
        models[model] = None
        columns[column] = None
        values[model, column] = float(row["value"])
    return list(models), list(columns), values


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def metrics_markdown(rows: list[dict]) -> str:
    """Markdown table, one row per model and one column per ``metric@k``; values to 4 decimals.

    A (model, column) pair without a row shows "–". Pipes in names are escaped.
    """
    models, columns, values = _table(rows)
    if not models:
        raise ReportError("no metric rows to tabulate")

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [
        "| model | " + " | ".join(cell(c) for c in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for model in models:
        lines.append(f"| {cell(model)} | " + " | ".join(_fmt(values.get((model, c))) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def below_baseline(
    rows: list[dict], metric: str = "precision", baseline: str = "popularity"
) -> dict[str, tuple[float, float]]:
    """Models scoring below ``baseline`` on ``metric`` (every cut-off k of it present in ``rows``):
    ``{model: (model's value, baseline's value)}``, in row order; the baseline and the ``random``
    rows are never flagged. Empty when the baseline has no such row."""
    reference = {
        row.get("k"): float(row["value"])
        for row in rows
        if row["model"] == baseline and row["metric"] == metric
    }
    flagged: dict[str, tuple[float, float]] = {}
    for row in rows:
        k = row.get("k")
        if row["metric"] != metric or row["model"] in (baseline, "random") or k not in reference:
            continue
        if float(row["value"]) < reference[k]:
            flagged[str(row["model"])] = (float(row["value"]), reference[k])
    return flagged


def _figure(**kwargs) -> Figure:
    # matplotlib is imported on first use: loading the Dagster definitions must stay fast.
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _png(fig: Figure) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    buffer = io.BytesIO()
    FigureCanvasAgg(fig).print_png(buffer)
    return buffer.getvalue()


def metrics_chart_png(rows: list[dict]) -> bytes:
    """Grouped bar chart as PNG bytes: one group per ``metric@k`` column, one bar per model."""
    models, columns, values = _table(rows)
    if not models:
        raise ReportError("no metric rows to chart")
    # At most 8 x 110 = 880 px wide: the chart fits the Dagster metadata pane and its dialog unscrolled.
    fig = _figure(figsize=(min(8.0, max(6.0, 1.1 * len(columns) * max(1.0, len(models) / 3))), 4.2), dpi=110)
    ax = fig.add_subplot()
    width = 0.8 / len(models)
    x = np.arange(len(columns))
    for m, model in enumerate(models):
        heights = [values.get((model, c), np.nan) for c in columns]
        bars = ax.bar(x + (m - (len(models) - 1) / 2) * width, heights, width, label=model)
        ax.bar_label(bars, fmt="%.3f", fontsize=7, padding=1, rotation=90 if len(models) > 3 else 0)
    ax.set_xticks(x, columns, rotation=20 if len(columns) > 6 else 0)
    ax.set_ylabel("value")
    ax.set_title("Ranking metrics by model")
    ax.margins(y=0.15)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, ncols=min(len(models), 4))
    fig.tight_layout()
    return _png(fig)


def loss_curve_png(losses: dict[str, list[float]]) -> bytes:
    """Line chart as PNG bytes: training loss per iteration (1-based) for each named run.

    The y axis is logarithmic when every loss is positive and they span more than a factor of 100.
    """
    curves = {name: np.asarray(values, dtype=np.float64) for name, values in losses.items() if len(values)}
    if not curves:
        raise ReportError("no loss values to plot")
    fig = _figure(figsize=(6.0, 3.8), dpi=110)
    ax = fig.add_subplot()
    for name, values in curves.items():
        ax.plot(np.arange(1, values.size + 1), values, marker="o", markersize=3, label=name)
    every = np.concatenate(list(curves.values()))
    if (every > 0).all() and every.max() > 100 * every.min():
        ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("training loss")
    ax.set_title("Training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _png(fig)


# What two numbers of the report mean, so they are not compared with a library's namesakes by mistake.
GLOSSARY = {
    "auc": "full AUC: the probability that a held-out artist of a user ranks above a random artist the user "
    "never played, over every non-train artist (not implicit's `auc`, a top-k estimate)",
    "mpr": "mean percentile rank of the held-out artists (0 = top, 0.5 = random), each weighted by its "
    "held-out value (play count); `mpr_unweighted` counts every held-out pair once",
}


def provenance_rows(rows: list[dict], split_seed: int | None) -> list[dict]:
    """One row per model: the settings fingerprint and split (with its seed) its numbers come from."""
    seen: dict[str, dict] = {}
    for row in rows:
        split = row.get("split", "")
        seen.setdefault(
            str(row["model"]),
            {
                "model": str(row["model"]),
                "settings_fingerprint": str(row.get("settings_fingerprint", "")),
                "split": str(split),
                "split_seed": "–" if split_seed is None or split == "all" else str(split_seed),
            },
        )
    return list(seen.values())


def report_markdown(
    rows: list[dict], dataset: dict[str, object], split_seed: int | None, charts: dict[str, bytes]
) -> str:
    """The report as markdown for the Dagster UI: dataset, provenance, metric table, glossary and the
    ``charts`` (title -> PNG) as data-URL images."""
    lines = ["### Dataset", "", "| | |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in dataset.items()]
    lines += ["", "### Where each number comes from", ""]
    provenance = provenance_rows(rows, split_seed)
    lines += ["| " + " | ".join(provenance[0]) + " |", "|---|---|---|---|"]
    lines += ["| " + " | ".join(r.values()) + " |" for r in provenance]
    lines += ["", "### Metrics", "", metrics_markdown(rows)]
    lines += [f"- **{name}**: {text}" for name, text in GLOSSARY.items()]
    for title, png in charts.items():
        data = base64.b64encode(png).decode("ascii")
        lines += ["", f"### {title}", "", f"![{title}](data:image/png;base64,{data})"]
    return "\n".join(lines) + "\n"


def _html_table(records: list[dict], red: frozenset[str] = frozenset()) -> str:
    columns: dict[str, None] = {}
    for record in records:
        columns.update(dict.fromkeys(map(str, record)))

    def value(v: object) -> str:
        if isinstance(v, float | np.floating):
            return _fmt(float(v))
        return html.escape(str(v))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join(
        ('<tr class="below">' if str(next(iter(r.values()), "")) in red else "<tr>")
        + "".join(f"<td>{value(r.get(c, ''))}</td>" for c in columns)
        + "</tr>"
        for r in records
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _img(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def html_report(
    title: str,
    rows: list[dict],
    losses: dict[str, list[float]],
    extra_tables: dict[str, list[dict]],
    generated_at: str,
    dataset: dict[str, object] | None = None,
    split_seed: int | None = None,
    sections: dict[str, str] | None = None,
) -> str:
    """A self-contained HTML page: the ``dataset`` it measured (name -> value), the settings
    fingerprint, split and ``split_seed`` behind each model's numbers, metric table (models x
    ``metric@k``) with what ``auc`` and ``mpr`` mean, metric chart, loss chart, and one table per
    ``extra_tables`` entry (columns = union of the records' keys). Charts are embedded as base64 PNG
    data URLs, so the page needs no other file. Empty ``losses`` omits the loss chart.
    Models below the popularity baseline on precision (:func:`below_baseline`) are shown in red with a
    warning line; ``sections`` maps a heading to an HTML fragment appended at the end (trusted: built by
    the caller from escaped parts).
    """
    models, columns, values = _table(rows)
    if not models:
        raise ReportError("no metric rows to report")
    metric_records = [{"model": m} | {c: values.get((m, c), "–") for c in columns} for m in models]
    below = below_baseline(rows)
    warnings = [
        f'<p class="below">{html.escape(m)} scores below the popularity baseline on precision: '
        f"{v:.4f} &lt; {b:.4f}</p>"
        for m, (v, b) in below.items()
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:70em}"
        "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #bbb;padding:.3em .6em}"
        "td{text-align:right}td:first-child{text-align:left}th{background:#eee}img{max-width:100%}"
        ".below{color:#c00;font-weight:bold}</style>",
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Generated {html.escape(generated_at)}</p>",
    ]
    if dataset:
        parts += ["<h2>Dataset</h2>", _html_table([{"": k, "value": v} for k, v in dataset.items()])]
    parts += [
        "<h2>Where each number comes from</h2>",
        _html_table(provenance_rows(rows, split_seed)),
        "<h2>Ranking metrics</h2>",
        *warnings,
        _html_table(metric_records, frozenset(below)),
        "<ul>"
        + "".join(
            f"<li><b>{html.escape(n)}</b>: {html.escape(t).replace('`', '')}</li>"
            for n, t in GLOSSARY.items()
        )
        + "</ul>",
        _img(metrics_chart_png(rows), "ranking metrics by model"),
    ]
    if any(len(v) for v in losses.values()):
        parts += ["<h2>Training loss</h2>", _img(loss_curve_png(losses), "training loss per iteration")]
    for name, records in extra_tables.items():
        parts += [f"<h2>{html.escape(name)}</h2>", _html_table(records) if records else "<p>(empty)</p>"]
    for heading, fragment in (sections or {}).items():
        parts += [f"<h2>{html.escape(heading)}</h2>", fragment]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def tag_profiles(
    artist_index: np.ndarray, tag_index: np.ndarray, n_artists: int, n_tags: int, tfidf: bool = False
) -> sp.csr_matrix:
    """Artist x tag profile matrix from tag assignments, rows L2-normalised.

    Entry (a, t) = number of assignments of tag t to artist a (each (user, artist, tag) row counts once),
    optionally times ``idf_t = log(n_tagged / df_t)`` where ``n_tagged`` is the number of artists with any
    tag and ``df_t`` the number of artists with tag t. Each non-empty row is divided by its L2 norm;
    artists without tags keep an empty row (no profile).

    Args:
        artist_index: (n,) int artist ids in [0, n_artists).
        tag_index: (n,) int tag ids in [0, n_tags).

    Returns:
        (n_artists, n_tags) float32 CSR with sorted indices.
    """
    artist_index = np.asarray(artist_index)
    tag_index = np.asarray(tag_index)
    if artist_index.shape != tag_index.shape or artist_index.ndim != 1:
        raise ReportError(
            f"artist_index {artist_index.shape} and tag_index {tag_index.shape} must be equal 1-D"
        )
    if artist_index.size and (
        artist_index.min() < 0
        or artist_index.max() >= n_artists
        or tag_index.min() < 0
        or tag_index.max() >= n_tags
    ):
        raise ReportError(f"ids must lie in [0, n_artists={n_artists}) and [0, n_tags={n_tags})")
    counts = canonical_csr(
        sp.coo_matrix(
            (np.ones(artist_index.size, dtype=np.float64), (artist_index, tag_index)),
            shape=(n_artists, n_tags),
        )
    )
    if tfidf:
        df = np.bincount(counts.indices, minlength=n_tags)
        n_tagged = np.count_nonzero(np.diff(counts.indptr))
        counts.data *= np.log(n_tagged / df[counts.indices])
        counts.eliminate_zeros()
    norms = np.sqrt(np.asarray(counts.multiply(counts).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ counts, dtype=np.float32)


def related_tag_similarity(query_ids: np.ndarray, related: np.ndarray, profiles: sp.spmatrix) -> float:
    """Mean tag-profile cosine similarity between query artists and their related artists.

    For each query artist q with a profile (non-empty row of the L2-normalised ``profiles``) and at least
    one related entry >= 0: s_q = mean over its related artists r of ``profiles[q] . profiles[r]`` (an
    artist without tags has similarity 0). Returns the mean of s_q over those queries, NaN if none.

    Args:
        query_ids: (n_queries,) int artist ids.
        related: (n_queries, k) int artist ids; entries < 0 mean "none".
        profiles: (n_artists, n_tags) sparse, rows L2-normalised (see :func:`tag_profiles`).
    """
    query_ids = np.asarray(query_ids)
    related = np.asarray(related)
    if related.ndim != 2 or query_ids.shape != (related.shape[0],):
        raise ReportError(
            f"related must be (n_queries, k) matching query_ids {query_ids.shape}, got {related.shape}"
        )
    profiles = sp.csr_matrix(profiles)
    has_profile = np.diff(profiles.indptr) > 0
    valid = related >= 0
    keep = has_profile[query_ids] & valid.any(axis=1)
    if not keep.any():
        return float("nan")
    q, rel, ok = query_ids[keep], related[keep], valid[keep]
    rows, cols = np.nonzero(ok)
    sims = np.asarray(profiles[q[rows]].multiply(profiles[rel[rows, cols]]).sum(axis=1)).ravel()
    per_query = np.bincount(rows, weights=sims, minlength=q.size) / ok.sum(axis=1)
    return float(per_query.mean())
