"""Answers from factor sets: related artists, recommendations and alias candidates as long tables."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.core.aliases import DEFAULT_MEMORY_BUDGET, alias_candidates
from recsys_assets.core.ann import AnnIndex, recall_at_k, related_items
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import get_model
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.topk import cosine_topk
from recsys_assets.pipeline.indexes import IndexRef, answer_method, open_index
from recsys_assets.progress import Progress
from recsys_assets.settings import AliasSettings, RelatedSettings, SyntheticSettings


def related_lists(
    ref: IndexRef,
    home: str | Path,
    factors: FactorSet,
    related: RelatedSettings,
    seed: int,
    threads: int,
    log: Callable[[str], None] | None = None,
) -> tuple[pd.DataFrame, float, str]:
    """Top-``n`` related artists (cosine) for every artist, the method used (:func:`answer_method`),
    and recall@10 of the answers against exact cosine top-10 on ``recall_sample`` seeded random artists
    with a non-zero vector (1.0 by construction for the exact method). The search is followed live
    (artists done / total, :class:`~recsys_assets.progress.Progress`; lines into ``log``)."""
    n, method = related.n, answer_method(ref, related)
    label = f"related artists {ref.model} ({method})"
    if method == "exact":
        with Progress(label, unit="artists", log=log) as progress:
            ids, scores = cosine_topk(factors.item_factors, n, threads=threads, progress=progress)
        return top_n_frame(ref.model, ids, scores, "artist_id", "related_id"), 1.0, method
    with Progress(label, unit="artists", log=log) as progress:
        ids, scores = related_items(open_index(ref, home, n), n, threads=threads, progress=progress)
    nonzero = np.flatnonzero(np.linalg.norm(factors.item_factors, axis=1) > 0)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(nonzero, size=min(related.recall_sample, nonzero.size), replace=False))
    k = min(10, n)
    exact, _ = cosine_topk(factors.item_factors, k, query_ids=queries, threads=threads)
    recall = recall_at_k(ids[queries, :k], exact, k)
    return top_n_frame(ref.model, ids, scores, "artist_id", "related_id"), float(recall), method


def top_n_frame(
    model: str,
    ids: np.ndarray,
    scores: np.ndarray,
    id_column: str,
    item_column: str,
    models: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Long-format table (model, id, rank, item, score) of a top-N matrix, padding (-1) dropped.

    ``model`` is a categorical column (one byte a row, not a Python string per row) over ``models``
    (default: just ``model``); frames built over the same ``models`` concatenate without turning it
    into an object column.
    """
    categories = models if models is not None else (model,)
    if model not in categories:
        raise ValueError(f"model {model!r} is not one of the categories {categories}")
    rows, ranks = np.nonzero(ids >= 0)
    codes = np.full(rows.size, categories.index(model), dtype=np.int8)
    return pd.DataFrame(
        {
            "model": pd.Categorical.from_codes(codes, categories=list(categories)),
            id_column: rows.astype(np.int32),
            "rank": (ranks + 1).astype(np.int32),
            item_column: ids[rows, ranks].astype(np.int32),
            "score": scores[rows, ranks].astype(np.float32),
        }
    )


def recommendation_frame(
    factors: FactorSet,
    plays: sp.csr_matrix,
    n: int,
    models: tuple[str, ...],
    threads: int,
    memory_budget: int,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Top-``n`` artists per user by the model's ranking (:meth:`Model.top_n`: its ``score`` hook when it
    has one, else the inner product in one fused pass per score tile), artists in ``plays`` (users x
    artists) removed, as a long table whose ``model`` column is categorical over ``models``; blocks sized
    from ``memory_budget`` bytes. Followed live: users done / total (lines into ``log``)."""
    with Progress(f"recommendations {factors.model}", unit="users", log=log) as progress:
        ids, scores = get_model(factors.model).top_n(
            factors, n, exclude=plays, threads=threads, memory_budget_bytes=memory_budget, progress=progress
        )
    return top_n_frame(factors.model, ids, scores, "user_id", "artist_id", models=models)


def related_preview(
    conn: Any, model: str, table: str = "related_artists", artists: int = 5, n: int = 5
) -> str:
    """Markdown preview: the most played artists and their closest related artists, by name."""
    rows = conn.execute(
        f"""
        WITH top AS (
            SELECT artist_id FROM plays GROUP BY artist_id ORDER BY count(*) DESC, artist_id LIMIT {artists}
        )
        SELECT a.name, string_agg(b.name, ', ' ORDER BY r.rank)
        FROM top JOIN {table} r USING (artist_id)
        JOIN artists a ON a.artist_id = r.artist_id JOIN artists b ON b.artist_id = r.related_id
        WHERE r.model = ? AND r.rank <= {n}
        GROUP BY a.name ORDER BY a.name
        """,
        [model],
    ).fetchall()
    lines = ["| artist | related |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def recommendation_preview(conn: Any, model: str, users: int = 5, n: int = 5) -> str:
    """Markdown preview: the most active users, the artists they play most and their top
    recommendations, by name."""
    rows = conn.execute(
        f"""
        WITH top AS (
            SELECT user_id FROM plays GROUP BY user_id ORDER BY count(*) DESC, user_id LIMIT {users}
        ),
        played AS (
            SELECT user_id, artist_id, row_number() OVER (PARTITION BY user_id ORDER BY plays DESC, artist_id) AS r
            FROM plays JOIN top USING (user_id)
        ),
        favourites AS (
            SELECT p.user_id, string_agg(a.name, ', ' ORDER BY p.r) AS names
            FROM played p JOIN artists a USING (artist_id) WHERE p.r <= 3 GROUP BY p.user_id
        )
        SELECT u.user_key, f.names, string_agg(a.name, ', ' ORDER BY r.rank)
        FROM top JOIN recommendations r USING (user_id)
        JOIN users u USING (user_id) JOIN artists a ON a.artist_id = r.artist_id
        JOIN favourites f USING (user_id)
        WHERE r.model = ? AND r.rank <= {n}
        GROUP BY u.user_key, f.names ORDER BY u.user_key
        """,
        [model],
    ).fetchall()
    lines = ["| user | plays most | recommended |", "|---|---|---|"]
    lines += [f"| {u} | {f} | {r} |" for u, f, r in rows]
    return "\n".join(lines)


def alias_table(
    factors: FactorSet,
    plays: sp.csr_matrix,
    aliases: AliasSettings,
    threads: int,
    index: AnnIndex | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """Alias candidates of one factor set, as configured in ``[aliases]``, with a ``model`` column;
    neighbours from ``index`` when given, else exact cosine top-k; working memory blocked to about
    ``memory_budget`` bytes. Followed live stage by stage (neighbours, listener overlaps, factor
    similarities, scores; lines into ``log``)."""
    with Progress(f"artist aliases {factors.model}", log=log) as progress:
        frame = alias_candidates(
            factors.item_factors,
            plays,
            k=aliases.k,
            min_factor_similarity=aliases.min_factor_similarity,
            max_listener_overlap=aliases.max_listener_overlap,
            min_listeners=aliases.min_listeners,
            index=index,
            threads=threads,
            memory_budget_bytes=memory_budget,
            min_score=aliases.min_score,
            progress=progress,
        )
    return frame.assign(model=factors.model)


def planted_alias_recall(table: pd.DataFrame, synthetic: SyntheticSettings) -> dict[str, float]:
    """Synthetic data only: recall of the generator's planted alias pairs among each model's top
    ``2 x n_pairs`` candidates (the synthetic loader keeps the generator's indices as artist ids)."""
    planted = generate_plays(**dataclasses.asdict(synthetic)).alias_pairs
    wanted = {(int(min(a, b)), int(max(a, b))) for a, b in planted}
    out = {}
    for model, group in table.groupby("model"):
        top = group.nlargest(2 * len(wanted), "score")
        found = {
            (int(min(a, b)), int(max(a, b))) for a, b in zip(top["artist_id"], top["alias_id"], strict=True)
        }
        out[f"planted_alias_recall_{model}"] = len(found & wanted) / max(len(wanted), 1)
    return out
