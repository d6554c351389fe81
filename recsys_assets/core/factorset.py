"""The factor set a model produces: one latent vector per user and per artist."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FactorSet:
    """Latent factors of one model.

    ``user_factors`` (float32, ``(n_users, k)``) and ``item_factors`` (float32, ``(n_items, k)``) score
    a user-item pair by their dot product. ``loss`` is the training loss per iteration where the model
    has one (ALS), ``seconds`` the wall time per iteration; ``settings_fingerprint`` names the settings
    that produced the set.
    """

    model: str
    user_factors: np.ndarray
    item_factors: np.ndarray
    settings_fingerprint: str
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def non_finite_counts(self) -> dict[str, int]:
        """Number of NaN or infinite values in each factor matrix."""
        return {
            "user_factors": int(np.size(self.user_factors) - np.isfinite(self.user_factors).sum()),
            "item_factors": int(np.size(self.item_factors) - np.isfinite(self.item_factors).sum()),
        }
