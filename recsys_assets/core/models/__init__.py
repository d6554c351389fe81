"""The model registry: every model the graph can fit, each one module of this package.

A model module defines

* a settings section (a :class:`~recsys_assets.core.sections.Section` dataclass whose ``TABLE`` is the
  model's name: its ``[name]`` table in the settings file), every field with its default and rule;
* ``fit(matrix, settings, *, threads, progress) -> FactorSet``: users x items CSR (float32) in, factors
  out, Dagster-free;
* ``MODEL = Model(...)``: the name, a one-line description, the section, the fit function, which
  matrix it reads (``"weighted"``: the weighted matrix of ``[weighting]``; ``"plays"``: raw play
  counts) and optional hooks;

and is listed in :data:`MODULES`. Whatever ranks a user's items (the evaluation, recommendations, tuning)
goes through :meth:`Model.evaluate` / :meth:`Model.top_n`, so a model with its own ``score`` hook is
ranked by it; artist-artist similarity (related artists, aliases, ANN indexes) reads the item factors.
The asset graph, the evaluation, the CLI and the catalog are generated
from :func:`registry`: adding a model is its module, its line in :data:`MODULES`, and its tests.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.metrics import RankingReport, evaluate_factors, evaluate_scores
from recsys_assets.core.slices import ProgressFn
from recsys_assets.core.topk import DEFAULT_MEMORY_BUDGET, topk_dot, topk_scores


class Progress(Protocol):
    """Called by a fit after each iteration / epoch: ``progress(step, total, loss_or_None, seconds)``
    (``step`` counts from 1)."""

    def __call__(self, step: int, total: int, loss: float | None, seconds: float) -> None: ...


class FitFunction(Protocol):
    def __call__(
        self, matrix: sp.csr_matrix, settings: Any, *, threads: int, progress: Progress | None = None
    ) -> FactorSet: ...


@dataclass(frozen=True)
class Model:
    """One entry of the registry (see the module docstring)."""

    name: str
    description: str
    settings: type
    fit: FitFunction
    # The matrix ``fit`` reads: the weighted matrix, or the raw play counts (value-predicting models).
    input: Literal["weighted", "plays"] = "weighted"
    # Labels shown in the Dagster UI next to the model's assets.
    kinds: tuple[str, ...] = ("numba",)
    # Data-dependent setting check: ``check(settings, shape)`` returns None, or what is wrong as
    # ``(key, allowed)``, e.g. ``("factors", "< min(users, artists) = 40")``; raised at asset start.
    check: Callable[[Any, tuple[int, int]], tuple[str, str] | None] | None = None
    # True when ``FactorSet.predict`` predicts the input's values (the evaluation then reports RMSE / MAE
    # of the held-out values, transformed by ``value_transform`` first when the model fits a transform).
    predicts_values: bool = False
    value_transform: Callable[[sp.csr_matrix, Any], sp.csr_matrix] | None = None
    # Optional: fold a new user in from their row of the model's input (1 x items CSR) against fixed
    # item factors, returning the user's vector; models without it cannot answer ``recommend --likes``.
    fold_in: Callable[[sp.csr_matrix, FactorSet, Any], Any] | None = None
    # Optional: ``score(factors, users) -> (len(users), n_items)`` scores of every item for a block of user
    # ids, for models whose ranking is not the dot product of the factors (``nets`` with ``mlp``). Ranking
    # consumers go through :meth:`evaluate` and :meth:`top_n`, which call it when set.
    score: Callable[[FactorSet, Any], Any] | None = None

    def evaluate(
        self,
        factors: FactorSet,
        train: sp.csr_matrix,
        test: sp.csr_matrix,
        *,
        k: int = 10,
        threads: int | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        progress: ProgressFn | None = None,
    ) -> RankingReport:
        """The ranking metrics of ``factors`` (this model's fit) on a split: by :attr:`score` when the
        model has one (:func:`~recsys_assets.core.metrics.evaluate_scores`), else by the factors' dot
        product (:func:`~recsys_assets.core.metrics.evaluate_factors`); ``progress`` follows the users
        evaluated, ``progress(done, total)``."""
        if self.score is not None:
            return evaluate_scores(
                functools.partial(self.score, factors),
                train,
                test,
                k=k,
                threads=threads,
                memory_budget_bytes=memory_budget_bytes,
                progress=progress,
            )
        return evaluate_factors(
            factors.user_factors,
            factors.item_factors,
            train,
            test,
            k=k,
            threads=threads,
            memory_budget_bytes=memory_budget_bytes,
            progress=progress,
        )

    def top_n(
        self,
        factors: FactorSet,
        n: int,
        exclude: sp.csr_matrix | None = None,
        *,
        threads: int | None = None,
        memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
        progress: ProgressFn | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every user's top-``n`` items ``(ids, scores)``, each ``(n_users, n)``, best first, items stored
        in ``exclude`` (users x items) removed: by :attr:`score` when the model has one
        (:func:`~recsys_assets.core.topk.topk_scores`), else by the factors' dot product
        (:func:`~recsys_assets.core.topk.topk_dot`); padding and ties as in ``topk_dot``; ``progress``
        follows the users done, ``progress(done, total)``."""
        if self.score is not None:
            return topk_scores(
                functools.partial(self.score, factors),
                factors.user_factors.shape[0],
                factors.item_factors.shape[0],
                n,
                exclude=exclude,
                threads=threads,
                memory_budget_bytes=memory_budget_bytes,
                progress=progress,
            )
        return topk_dot(
            factors.user_factors,
            factors.item_factors,
            n,
            exclude=exclude,
            threads=threads,
            memory_budget_bytes=memory_budget_bytes,
            progress=progress,
        )


# Every model module, in the order models appear in tables and reports.
MODULES: tuple[str, ...] = ("als", "lsa", "bpr", "lmf", "pmf", "gravity", "nets")


@functools.cache
def registry() -> dict[str, Model]:
    """Model name -> :class:`Model`, in :data:`MODULES` order."""
    models = {}
    for module in MODULES:
        model = importlib.import_module(f"{__name__}.{module}").MODEL
        if model.name != model.settings.TABLE:
            raise TypeError(f"{module}: settings.TABLE {model.settings.TABLE!r} != model name {model.name!r}")
        models[model.name] = model
    return models


def get_model(name: str) -> Model:
    """The registered model called ``name``; ``KeyError`` naming the known ones otherwise."""
    models = registry()
    if name not in models:
        raise KeyError(f"unknown model {name!r}; known models: {', '.join(models)}")
    return models[name]
