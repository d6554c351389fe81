"""Implicit ALS (Hu, Koren & Volinsky 2008) as a registered model: settings and fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.als import fit_als
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.foldin import fold_in_als
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Section, Seed


@dataclass(frozen=True)
class AlsSettings(Section):
    """Implicit ALS with the conjugate-gradient (or Cholesky) solver."""

    TABLE: ClassVar[str] = "als"

    # Defaults chosen on HetRec-2k (README "Quality").
    factors: PositiveInt = 32
    regularization: NonNegativeFloat = 1.0
    # Confidence of an observed pair = alpha * weighted value (implicit's convention).
    alpha: PositiveFloat = 0.05
    iterations: PositiveInt = 15
    solver: Literal["cg", "cholesky"] = "cg"
    cg_steps: PositiveInt = 3
    seed: Seed = 0


def fit(
    matrix: sp.csr_matrix, settings: AlsSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    """ALS on ``alpha * matrix`` (the confidence of observed pairs)."""

    def callback(iteration: int, loss: float | None, seconds: float) -> None:
        if progress is not None:
            progress(iteration + 1, settings.iterations, loss, seconds)

    result = fit_als(
        (matrix * np.float32(settings.alpha)).tocsr(),
        factors=settings.factors,
        regularization=settings.regularization,
        iterations=settings.iterations,
        solver=settings.solver,
        cg_steps=settings.cg_steps,
        seed=settings.seed,
        threads=threads,
        callback=callback,
    )
    return FactorSet(
        model="als",
        user_factors=result.user_factors,
        item_factors=result.item_factors,
        loss=[float(v) for v in result.loss],
        seconds=[float(v) for v in result.seconds],
    )


def fold_in(row: sp.csr_matrix, factors: FactorSet, settings: AlsSettings) -> np.ndarray:
    """A new user's vector from their row of the weighted matrix: the exact ALS user step."""
    return fold_in_als(row, factors.item_factors, settings.alpha, settings.regularization)


MODEL = Model(
    name="als",
    description="Implicit ALS (Hu, Koren & Volinsky 2008; conjugate-gradient solver of Takacs et al. 2011) "
    "on alpha x the weighted matrix.",
    settings=AlsSettings,
    fit=fit,
    kinds=("numba",),
    fold_in=fold_in,
)
