"""The factor set a model produces: one latent vector per user and per artist."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class FactorSet:
    """Latent factors of one model.

    ``user_factors`` (float32, ``(n_users, k)``) and ``item_factors`` (float32, ``(n_items, k)``) score
    a user-item pair by their dot product: every ranking consumer (evaluation, recommendations, related
    artists, indexes) reads only these two matrices. A model with item biases folds them into the
    factors (an item column holding ``b_i`` against a user column of ones, as ``implicit`` does), so the
    dot product ranks exactly as the model does.

    Value-predicting models (PMF, gravity MF) also set ``user_offset`` (per user: the global bias plus
    the user's bias, a constant per user that never changes a ranking) so that
    :meth:`predict` gives the model's value prediction ``user_offset[u] + x_u . y_i``.
    ``item_bias`` / ``user_bias`` are the learned biases for reports (already inside the factors /
    ``user_offset``).

    ``loss`` is the training loss per iteration or epoch where the model has one, ``seconds`` the wall
    time of each; ``loss_components`` holds named per-iteration series (e.g. the gravity term, the
    validation loss) and ``curves`` other diagnostic series (e.g. a learning-rate range test:
    ``{"lr_range": {"x": [...], "y": [...]}}``). ``settings_fingerprint`` names the settings and data
    that produced the set.
    """

    model: str
    user_factors: np.ndarray
    item_factors: np.ndarray
    settings_fingerprint: str = ""
    loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    user_offset: np.ndarray | None = None
    item_bias: np.ndarray | None = None
    user_bias: np.ndarray | None = None
    loss_components: dict[str, list[float]] = field(default_factory=dict)
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    # Parameters of a model whose score is not the factors' dot product (the ``mlp`` network of ``nets``):
    # such a model's ``Model.score`` reads them; empty for dot-product models.
    network: dict[str, np.ndarray] = field(default_factory=dict)

    def non_finite_counts(self) -> dict[str, int]:
        """Number of NaN or infinite values in each factor matrix."""
        return {
            "user_factors": int(np.size(self.user_factors) - np.isfinite(self.user_factors).sum()),
            "item_factors": int(np.size(self.item_factors) - np.isfinite(self.item_factors).sum()),
        }

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """The model's value for each (user, item) pair: ``user_offset[u] + x_u . y_i`` (float64)."""
        users, items = np.asarray(users), np.asarray(items)
        dots = np.einsum(
            "ij,ij->i",
            self.user_factors[users].astype(np.float64),
            self.item_factors[items].astype(np.float64),
        )
        if self.user_offset is not None:
            dots += self.user_offset[users]
        return dots
