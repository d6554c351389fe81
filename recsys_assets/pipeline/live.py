"""Answers computed at query time from a published catalog (no Dagster, no refit): artist arithmetic,
a new listener folded in from a list of liked artists, and ALS explanations.

Everything reads the catalog connection the CLI opens (the published ``artist_factors``, ``plays`` and,
when the graph is tuned, the chosen settings in ``tuning``), so the answers use exactly the factors and
the settings of the published generation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.loaders import read_play_matrix
from recsys_assets.core.models import Model
from recsys_assets.core.tuning import WeightingChoice
from recsys_assets.pipeline.tuning import production_settings, published_choice, weighted_input
from recsys_assets.settings import Settings


def item_factors(conn: Any, model: str) -> np.ndarray:
    """The published artist factors of ``model``, float32 ``(n_artists, f)``, row = artist_id."""
    n_artists = conn.execute("SELECT coalesce(max(artist_id) + 1, 0) FROM artists").fetchone()[0]
    rows = conn.execute(
        "SELECT artist_id, factors FROM artist_factors WHERE model = ? ORDER BY artist_id", [model]
    ).fetchall()
    if not rows:
        raise LookupError(f"no published artist factors for model {model!r}: run `recsys refresh` first")
    Y = np.zeros((n_artists, len(rows[0][1])), dtype=np.float32)
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    Y[ids] = np.asarray([r[1] for r in rows], dtype=np.float32)
    return Y


@dataclass
class Published:
    """One model as published: its artist factors, the settings it was fitted with, and the full
    matrix it read (the play counts weighted as it was weighted)."""

    model: Model
    section: Any
    weighting: WeightingChoice | None
    item_factors: np.ndarray
    matrix: sp.csr_matrix


def published_model(conn: Any, model: Model, settings: Settings) -> Published:
    """The published state of ``model``: tuned settings from the catalog when ``[tuning]`` is on,
    else the settings file's."""
    tuned = published_choice(conn, model.name) if settings.tuning.mode != "off" else None
    section, choice = production_settings(settings.model_settings(model.name), settings.weighting, tuned)
    plays = read_play_matrix(conn)
    matrix = plays if model.input == "plays" else weighted_input(plays, settings.weighting, choice)
    return Published(model, section, choice, item_factors(conn, model.name), matrix)


def fold_in_scores(published: Published, liked: list[int]) -> np.ndarray:
    """Scores of every artist for a new listener who likes the artists ``liked`` (ids): the model's
    :attr:`~recsys_assets.core.models.Model.fold_in` of :func:`~recsys_assets.core.foldin.likes_row`
    against the published item factors, dotted with them; the liked artists get ``-inf``."""
    from recsys_assets.core.factorset import FactorSet
    from recsys_assets.core.foldin import likes_row

    if published.model.fold_in is None:
        raise LookupError(f"model {published.model.name!r} cannot fold in a new listener")
    Y = published.item_factors
    factors = FactorSet(published.model.name, np.zeros((0, Y.shape[1]), dtype=np.float32), Y)
    vector = published.model.fold_in(likes_row(published.matrix, liked), factors, published.section)
    scores = Y.astype(np.float64) @ np.asarray(vector, dtype=np.float64)
    scores[liked] = -np.inf
    return scores
