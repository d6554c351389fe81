"""LSA (truncated SVD of the weighted matrix) as a registered model: settings and fit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.lsa import fit_lsa
from recsys_assets.core.models import Model, Progress
from recsys_assets.core.sections import PositiveInt, Section, Seed


@dataclass(frozen=True)
class LsaSettings(Section):
    """Truncated SVD of the weighted matrix (users = U, artists = V diag(s))."""

    TABLE: ClassVar[str] = "lsa"

    # Must also be < min(users, artists) of the data: checked at the start of the LSA assets.
    factors: PositiveInt = 64
    seed: Seed = 0


def fit(
    matrix: sp.csr_matrix, settings: LsaSettings, *, threads: int, progress: Progress | None = None
) -> FactorSet:
    result = fit_lsa(matrix, factors=settings.factors, seed=settings.seed, threads=threads)
    return FactorSet(model="lsa", user_factors=result.user_factors, item_factors=result.item_factors)


def check(settings: LsaSettings, shape: tuple[int, int]) -> tuple[str, str] | None:
    """A truncated SVD has fewer components than the smaller side of the matrix."""
    limit = min(shape)
    return None if settings.factors < limit else ("factors", f"< min(users, artists) = {limit}")


MODEL = Model(
    name="lsa",
    description="LSA: truncated SVD of the weighted matrix (users = U, artists = V diag(s)).",
    settings=LsaSettings,
    fit=fit,
    kinds=("scipy",),
    check=check,
)
