"""Choosing a model's settings (and the weighting it reads) by measurement on the training data.

Validation. The tuner sees only the *training* part of the evaluation split: it carves a validation split
out of it with :func:`~recsys_assets.core.split.per_user_holdout` (every user with at least ``min_items``
train items hands ``validation_fraction`` of them to validation), fits each candidate on the rest and
scores it with :meth:`~recsys_assets.core.models.Model.evaluate` on the held-out part. The test part
the evaluation reports on is never an input (:func:`tune_split` takes a whole ``Split`` and reads only
``split.train``).

Candidates. A candidate is a weighting choice (:class:`WeightingChoice`: scheme, orientation, BM25 K1/B,
log epsilon) and a model settings section built from the user's section with ``dataclasses.replace``.
The swept fields and their values come from :func:`default_grid` (small, documented ranges) unless a grid
is given; fields named in ``fixed`` (settings the user wrote explicitly) keep the user's value and are
never swept, and ``weighting.<field>`` names in ``fixed`` pin that weighting field the same way.

Search. ``method="grid"`` fits every candidate; ``"halving"`` is successive halving (Jamieson &
Talwalkar 2016) with the number of validation users as the resource: every candidate on a user sample,
the best ``1 / eta`` on ``eta`` times as many users, until one rung uses them all; ``"random"`` fits
``budget`` candidates drawn without replacement; ``"auto"`` is the grid up to ``max_grid`` candidates and
halving beyond, and halving whenever the search runs on a user sample (large data: every fit there costs
seconds, so the whole grid of even a few dozen candidates would not fit the pipeline's time).

Large data: ``user_sample`` fits and validates on a random sample of users (by default,
:func:`automatic_sample`, the share of users holding about ``sample_plays`` training plays once the data
has more), the artists with no play in the sample dropped, and ``search_iterations`` caps an iterative
model's ``iterations`` / ``epochs`` during the search only; the chosen settings keep the user's value, and
the caller fits the winner on everything. ``budget_seconds`` starts no new fit once the search has run
that long and keeps the best of the furthest halving rung reached (``TuningResult.stopped``).
:func:`ranking_agreement` measures how well a sample's ranking of candidates agrees with the full data's.

Objective: ``precision`` (p@k, default), ``recall``, ``ndcg``, ``map``, ``auc`` (higher is better) or
``mpr`` (lower is better).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.models import Model
from recsys_assets.core.sections import NonNegativeFloat, NonNegativeInt, PositiveInt, Range, Section, Seed
from recsys_assets.core.split import Split, per_user_holdout
from recsys_assets.core.weighting import weight_user_items

__all__ = [
    "OBJECTIVES",
    "TuningError",
    "TuningResult",
    "TuningSettings",
    "WeightingChoice",
    "candidates",
    "default_grid",
    "default_weightings",
    "ranking_agreement",
    "tune",
    "tune_split",
    "validation_split",
]

# Objective name -> True when higher is better (names are RankingReport fields).
OBJECTIVES: dict[str, bool] = {
    "precision": True,
    "recall": True,
    "ndcg": True,
    "map": True,
    "auc": True,
    "mpr": False,
}
METHODS = ("auto", "grid", "halving", "random")


class TuningError(ValueError):
    """The tuning inputs (grid, objective, method, data) cannot give a search."""


@dataclass(frozen=True)
class TuningSettings(Section):
    """How the settings of every enabled model are chosen (the ``[tuning]`` table)."""

    TABLE: ClassVar[str] = "tuning"

    # "off": the settings file is used as written; otherwise the search method (see the module docstring).
    mode: Literal["off", "auto", "grid", "halving", "random"] = "off"
    objective: Literal["precision", "recall", "ndcg", "map", "auc", "mpr"] = "precision"
    k: PositiveInt = 10
    # "auto" runs the whole grid up to this many candidates, successive halving beyond (and always when
    # the search runs on a user sample).
    max_grid: PositiveInt = 48
    # Candidates fitted by "random".
    budget: PositiveInt = 24
    eta: Annotated[int, Range(ge=2)] = 3
    # Smallest user sample of the first halving rung.
    min_users: PositiveInt = 200
    validation_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    # Large data: search on this many users (0 = automatic: all users while the training part has at most
    # `sample_plays` plays, else the share of users holding about that many) and cap iterations / epochs
    # at this (0 = no cap); the chosen settings keep the model's own iterations and are fitted on everything.
    user_sample: NonNegativeInt = 0
    sample_plays: NonNegativeInt = 1_000_000
    search_iterations: NonNegativeInt = 0
    # Start no new fit after this many seconds of search and keep the best so far (0 = no limit).
    budget_seconds: NonNegativeFloat = 0.0
    seed: Seed = 0

    def search_arguments(self) -> dict[str, Any]:
        """Keyword arguments of :func:`tune` for these settings (``mode`` must not be ``"off"``)."""
        if self.mode == "off":
            raise TuningError('[tuning] mode = "off": nothing to search')
        return {
            "method": self.mode,
            "objective": self.objective,
            "k": self.k,
            "max_grid": self.max_grid,
            "budget": self.budget,
            "eta": self.eta,
            "min_users": self.min_users,
            "validation_fraction": self.validation_fraction,
            "user_sample": self.user_sample or None,
            "sample_plays": self.sample_plays or None,
            "search_iterations": self.search_iterations or None,
            "budget_seconds": self.budget_seconds or None,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class WeightingChoice:
    """How the play counts become the matrix a ``"weighted"`` model reads (see ``core/weighting.py``)."""

    scheme: str = "bm25"
    orientation: str = "artist_user"
    k1: float = 100.0
    b: float = 0.8
    epsilon: float = 1.0

    def apply(self, plays: sp.csr_matrix) -> sp.csr_matrix:
        """The weighted users x items matrix (float32 CSR, same pattern)."""
        return weight_user_items(
            plays, self.scheme, self.orientation, k1=self.k1, b=self.b, epsilon=self.epsilon
        )  # type: ignore[arg-type]

    def label(self) -> str:
        """Short name, e.g. ``bm25/artist_user k1=100 b=0.8``, ``log eps=1``, ``raw``."""
        if self.scheme == "bm25":
            return f"bm25/{self.orientation} k1={self.k1:g} b={self.b:g}"
        if self.scheme == "tfidf":
            return f"tfidf/{self.orientation}"
        if self.scheme == "log":
            return f"log eps={self.epsilon:g}"
        return self.scheme


def default_weightings(base: WeightingChoice, fixed: Iterable[str] = ()) -> list[WeightingChoice]:
    """The weighting choices searched by default, with ``weighting.<field>`` names in ``fixed`` pinned.

    raw counts; log (``epsilon`` of ``base``); TF-IDF on either orientation; BM25 on either orientation
    with (K1, B) = (100, 0.8) (the product default, chosen on HetRec) and (1.2, 0.75) (the text-retrieval
    default). Duplicates after pinning are dropped; order is kept.
    """
    pinned = {name.removeprefix("weighting.") for name in fixed if name.startswith("weighting.")}
    unknown = pinned - {f.name for f in dataclasses.fields(WeightingChoice)}
    if unknown:
        raise TuningError(f"unknown weighting fields in fixed: {sorted(unknown)}")
    choices = [WeightingChoice("raw"), WeightingChoice("log", epsilon=base.epsilon)]
    for orientation in ("artist_user", "user_artist"):
        choices.append(WeightingChoice("tfidf", orientation))
    for orientation, (k1, b) in itertools.product(
        ("artist_user", "user_artist"), ((100.0, 0.8), (1.2, 0.75))
    ):
        choices.append(WeightingChoice("bm25", orientation, k1, b, base.epsilon))
    out: list[WeightingChoice] = []
    for choice in choices:
        choice = dataclasses.replace(choice, **{name: getattr(base, name) for name in pinned})
        if choice not in out:
            out.append(choice)
    return out


# Per-model grids where the generic rule below is not the right one. ALS ``alpha`` is written as a
# multiple of ``1 / mean weighted value`` (see ``_resolve``) because weightings differ in scale by
# orders of magnitude (raw plays vs BM25): the same relative grid fits every weighting.
_MODEL_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "als": {
        "alpha": ("relative", 1.0, 4.0, 16.0),
        "regularization": (0.1, 1.0, 10.0),
        "factors": (32, 64),
    },
    "lsa": {"factors": (16, 32, 64, 128)},
}


def default_grid(model_name: str, section: type) -> dict[str, tuple[Any, ...]]:
    """Swept fields and values for ``model_name`` whose settings class is ``section``.

    ALS: alpha x (1, 4, 16) / mean weighted value, regularization (0.1, 1, 10), factors (32, 64).
    LSA: factors (16, 32, 64, 128). Any other model: the fields it has among ``learning_rate``
    (default x 0.3, 1, 3), ``regularization`` (default x 0.1, 1, 10; 0, 0.01, 0.1 when the default is
    0) and ``factors`` (default / 2, default, default x 2).
    """
    if model_name in _MODEL_GRIDS:
        return dict(_MODEL_GRIDS[model_name])
    defaults = {f.name: f.default for f in dataclasses.fields(section)}
    grid: dict[str, tuple[Any, ...]] = {}
    if "learning_rate" in defaults:
        lr = float(defaults["learning_rate"])
        grid["learning_rate"] = (lr * 0.3, lr, lr * 3.0)
    if "regularization" in defaults:
        reg = float(defaults["regularization"])
        grid["regularization"] = (reg * 0.1, reg, reg * 10.0) if reg > 0 else (0.0, 0.01, 0.1)
    if "factors" in defaults:
        f = int(defaults["factors"])
        grid["factors"] = tuple(sorted({max(1, f // 2), f, f * 2}))
    return grid


def validation_split(train: sp.spmatrix, fraction: float = 0.2, min_items: int = 5, seed: int = 0) -> Split:
    """The validation split carved out of ``train`` (a per-user holdout; ``Split.test`` is validation)."""
    return per_user_holdout(train, test_fraction=fraction, min_items=min_items, seed=seed)


@dataclass(frozen=True)
class Candidate:
    """One point of the search: a weighting and the model settings (swept values as given)."""

    weighting: WeightingChoice
    values: tuple[tuple[str, Any], ...]

    def key(self) -> str:
        inner = ", ".join(f"{name}={_show(value)}" for name, value in self.values)
        return f"{self.weighting.label()} | {inner}"


def _show(value: Any) -> str:
    if isinstance(value, tuple) and value and value[0] == "relative":
        return f"{value[1]:g}/mean"
    return f"{value:g}" if isinstance(value, float) else str(value)


def candidates(
    grid: Mapping[str, Sequence[Any]], weightings: Sequence[WeightingChoice], fixed: Iterable[str] = ()
) -> list[Candidate]:
    """Every combination of weighting and grid values, fields in ``fixed`` left out of the grid.

    A grid value list that starts with ``"relative"`` stands for values relative to the mean weighted
    value (ALS alpha): each other element ``t`` becomes ``t / mean`` when the candidate is built.
    """
    fixed = set(fixed)
    swept = {name: values for name, values in grid.items() if name not in fixed}
    axes = []
    for name, values in swept.items():
        values = tuple(values)
        if values and values[0] == "relative":
            values = tuple(("relative", float(t)) for t in values[1:])
        if not values:
            raise TuningError(f"grid for {name!r} is empty")
        axes.append([(name, v) for v in values])
    return [Candidate(w, tuple(combo)) for w in weightings for combo in itertools.product(*axes)]


@dataclass
class TuningResult:
    """Outcome of a search.

    ``rows``: one dict per fit: ``model``, ``weighting`` (label), ``settings`` (swept field -> value as
    fitted), ``point`` (swept field -> grid value; a relative alpha as its multiplier), ``objective`` (its value), ``metrics`` (every validation metric), ``seconds`` (fit +
    evaluation), ``users`` (validation users in the fit's sample), ``rung`` (0 for grid / random).
    ``chosen_settings`` is the user's section with the winner's swept values (iterations etc. untouched),
    ``chosen_weighting`` the winner's weighting. ``search_users`` / ``search_items``: the size of the
    (sampled) validation problem; ``stopped``: the time budget ended the search before every planned fit.
    """

    model: str
    objective: str
    higher_is_better: bool
    rows: list[dict[str, Any]]
    chosen_settings: Any
    chosen_weighting: WeightingChoice
    chosen_row: dict[str, Any]
    swept: tuple[str, ...]
    method: str
    seconds: float
    search_users: int = 0
    search_items: int = 0
    stopped: bool = False

    def table(self) -> list[dict[str, Any]]:
        """Flat rows for a catalog table: model, weighting, settings (JSON-able), objective, metrics, seconds."""
        return [
            {
                "model": r["model"],
                "weighting": r["weighting"],
                "settings": dict(r["settings"]),
                "objective": self.objective,
                "value": r["objective"],
                **{f"val_{k}": v for k, v in r["metrics"].items()},
                "seconds": r["seconds"],
                "users": r["users"],
                "rung": r["rung"],
                "chosen": r is self.chosen_row,
                "stopped": self.stopped,
            }
            for r in self.rows
        ]


def _section_values(candidate: Candidate, mean_value: float) -> dict[str, Any]:
    values = {}
    for name, value in candidate.values:
        if isinstance(value, tuple) and value[0] == "relative":
            value = float(value[1] / mean_value)
        values[name] = value
    return values


def automatic_sample(train: sp.spmatrix, user_sample: int | None, sample_plays: int | None) -> int | None:
    """Users to search on: ``user_sample`` when given; otherwise all (None) while ``train`` has at most
    ``sample_plays`` stored plays, else the share of users that holds about ``sample_plays`` of them
    (``users * sample_plays / plays``, at least 1). Deterministic in the matrix's shape and size."""
    if user_sample is not None or sample_plays is None or train.nnz <= sample_plays:
        return user_sample
    return max(1, int(train.shape[0] * sample_plays / train.nnz))


def _sample_users(split: Split, n_users: int | None, seed: int, compact: bool = False) -> Split:
    """``split`` restricted to a random sample of ``n_users`` rows (all rows when None or larger).

    ``compact`` also drops the item columns with no stored entry in the sample (train or validation):
    nothing in the sample tells candidates apart on them and no validation hit can be there, while every
    fit and every scoring pass would pay for them (at 360K users x 300K artists a sample of a few
    thousand users plays a small part of the catalogue). ``bench/tune_scale.py --agreement`` measures
    how well the sampled search ranks the candidates against the full one."""
    total = split.train.shape[0]
    if n_users is None or n_users >= total:
        return split
    rows = np.sort(np.random.default_rng(seed).choice(total, size=n_users, replace=False))
    train, test = split.train[rows], split.test[rows]
    if compact:
        used = np.zeros(train.shape[1], dtype=bool)
        used[train.indices] = True
        used[test.indices] = True
        columns = np.flatnonzero(used)
        train, test = train[:, columns], test[:, columns]
    return Split(train.tocsr(), test.tocsr(), split.method, split.seed, split.test_fraction)


def _evaluate(
    model: Model,
    base_settings: Any,
    candidate: Candidate,
    split: Split,
    matrices: dict[WeightingChoice, sp.csr_matrix],
    *,
    objective: str,
    k: int,
    threads: int,
    search_iterations: int | None,
    rung: int,
) -> dict[str, Any]:
    """Fit one candidate on ``split.train`` and score it on ``split.test``; ``matrices`` caches the
    weighted training matrix per weighting (the first candidate of a weighting pays for it)."""
    start = time.perf_counter()
    if candidate.weighting not in matrices:
        plays = split.train.astype(np.float32)
        matrices[candidate.weighting] = plays if model.input == "plays" else candidate.weighting.apply(plays)
    matrix = matrices[candidate.weighting]
    mean_value = float(matrix.data.mean()) if matrix.nnz else 1.0
    values = _section_values(candidate, mean_value)
    fitted = dict(values)
    names = {f.name for f in dataclasses.fields(base_settings)}
    for name in ("iterations", "epochs"):
        if search_iterations is not None and name in names:
            fitted[name] = min(getattr(base_settings, name), search_iterations)
    settings = dataclasses.replace(base_settings, **fitted)
    if model.check is not None and (problem := model.check(settings, matrix.shape)) is not None:
        metrics, value = {}, math.nan
    else:
        factors = model.fit(matrix, settings, threads=threads)
        report = model.evaluate(factors, split.train, split.test, k=k, threads=threads)
        metrics = {
            name: float(getattr(report, name))
            for name in ("precision", "recall", "map", "ndcg", "auc", "mpr")
        }
        value = metrics[objective]
        problem = None
    return {
        "model": model.name,
        "weighting": candidate.weighting.label(),
        "settings": values,
        "point": {name: value[1] if isinstance(value, tuple) else value for name, value in candidate.values},
        "objective": value,
        "metrics": metrics,
        "seconds": time.perf_counter() - start,
        "users": int(np.count_nonzero(np.diff(split.test.indptr))),
        "rung": rung,
        "skipped": None if problem is None else f"{problem[0]} must be {problem[1]}",
        "candidate": candidate,
    }


def _order(rows: list[dict[str, Any]], higher: bool) -> list[dict[str, Any]]:
    """Rows best first; NaN (skipped) last; ties keep grid order."""

    def key(item: tuple[int, dict[str, Any]]) -> tuple[int, float, int]:
        i, row = item
        v = row["objective"]
        return (1, 0.0, i) if math.isnan(v) else (0, -v if higher else v, i)

    return [row for _, row in sorted(enumerate(rows), key=key)]


def tune(
    train: sp.spmatrix,
    model: Model,
    base_settings: Any,
    *,
    base_weighting: WeightingChoice | None = None,
    fixed: Iterable[str] = (),
    grid: Mapping[str, Sequence[Any]] | None = None,
    weightings: Sequence[WeightingChoice] | None = None,
    method: str = "auto",
    max_grid: int = 48,
    budget: int | None = None,
    eta: int = 3,
    min_users: int = 200,
    objective: str = "precision",
    k: int = 10,
    validation_fraction: float = 0.2,
    user_sample: int | None = None,
    sample_plays: int | None = None,
    search_iterations: int | None = None,
    budget_seconds: float | None = None,
    seed: int = 0,
    threads: int = 1,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> TuningResult:
    """Search ``model``'s settings (and weighting) on a validation split of the play counts ``train``.

    ``train`` is the users x items *training* play matrix; ``base_settings`` the user's section (its
    values are the starting point and everything not swept); ``fixed`` names fields never to sweep
    (``weighting.<field>`` for weighting fields). ``grid`` / ``weightings`` default to
    :func:`default_grid` / :func:`default_weightings`; a ``"plays"`` model ignores weightings. See the
    module docstring for ``method``, ``budget``, ``eta``, ``user_sample``, ``sample_plays``,
    ``search_iterations`` and ``budget_seconds``; ``min_users`` is the smallest sample of the first halving
    rung. ``progress`` gets each row.
    """
    if objective not in OBJECTIVES:
        raise TuningError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if method not in METHODS:
        raise TuningError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if eta < 2:
        raise TuningError(f"eta must be >= 2, got {eta}")
    fixed = frozenset(fixed)
    unknown = {n for n in fixed if not n.startswith("weighting.")} - {
        f.name for f in dataclasses.fields(base_settings)
    }
    if unknown:
        raise TuningError(f"fixed names fields [{model.name}] does not have: {sorted(unknown)}")
    base_weighting = base_weighting or WeightingChoice()
    if model.input == "plays":
        weightings = [base_weighting]
    elif weightings is None:
        weightings = default_weightings(base_weighting, fixed)
    grid = default_grid(model.name, type(base_settings)) if grid is None else dict(grid)
    unknown = set(grid) - {f.name for f in dataclasses.fields(base_settings)}
    if unknown:
        raise TuningError(f"grid names fields [{model.name}] does not have: {sorted(unknown)}")
    pool = candidates(grid, weightings, fixed)
    if not pool:
        raise TuningError("nothing to search: every candidate list is empty")
    user_sample = automatic_sample(train, user_sample, sample_plays)
    if method == "auto":
        sampled = user_sample is not None and user_sample < train.shape[0]
        method = "grid" if len(pool) <= max_grid and not sampled else "halving"
    if method == "random":
        if budget is None or budget < 1:
            raise TuningError(f"random search needs a budget >= 1, got {budget}")
        picks = np.random.default_rng(seed).choice(len(pool), size=min(budget, len(pool)), replace=False)
        pool = [pool[i] for i in sorted(picks)]
    start = time.perf_counter()
    split = _sample_users(
        validation_split(train, validation_fraction, seed=seed), user_sample, seed, compact=True
    )
    higher = OBJECTIVES[objective]
    run = dict(objective=objective, k=k, threads=threads, search_iterations=search_iterations)
    rows: list[dict[str, Any]] = []
    stopped = False

    def fit_all(pool: list[Candidate], data: Split, rung: int) -> list[dict[str, Any]]:
        nonlocal stopped
        out: list[dict[str, Any]] = []
        matrices: dict[WeightingChoice, sp.csr_matrix] = {}
        for candidate in pool:
            if budget_seconds is not None and rows and time.perf_counter() - start >= budget_seconds:
                stopped = True
                break
            row = _evaluate(model, base_settings, candidate, data, matrices, rung=rung, **run)
            out.append(row)
            rows.append(row)
            if progress is not None:
                progress(row)
        return out

    if method == "halving":
        n_users = split.train.shape[0]
        rungs = max(0, math.ceil(math.log(max(len(pool), 1), eta)))
        while rungs and n_users / eta**rungs < min_users:
            rungs -= 1
        for rung in range(rungs + 1):
            size = n_users if rung == rungs else int(n_users / eta ** (rungs - rung))
            # The pool is in the previous rung's order, best first: a budget stop keeps the leaders.
            fitted = fit_all(pool, _sample_users(split, size, seed + 1 + rung, compact=True), rung)
            if stopped:
                break
            ranked = _order(fitted, higher)
            keep = len(pool) if rung == rungs else max(1, math.ceil(len(pool) / eta))
            pool = [row["candidate"] for row in ranked[:keep] if not math.isnan(row["objective"])] or [
                ranked[0]["candidate"]
            ]
        # The best of the last rung that fitted anything (a budget stop may end the search early).
        last = max(row["rung"] for row in rows)
        final = [row for row in rows if row["rung"] == last]
    else:
        final = fit_all(pool, split, 0)
    best = _order(final, higher)[0]
    if math.isnan(best["objective"]):
        raise TuningError(f"every candidate was skipped; first reason: {best['skipped']}")
    chosen = dataclasses.replace(base_settings, **best["settings"])
    return TuningResult(
        model=model.name,
        objective=objective,
        higher_is_better=higher,
        rows=rows,
        chosen_settings=chosen,
        chosen_weighting=best["candidate"].weighting,
        chosen_row=best,
        swept=tuple(name for name in grid if name not in fixed)
        + (("weighting",) if len(weightings) > 1 else ()),
        method=method,
        seconds=time.perf_counter() - start,
        search_users=int(split.train.shape[0]),
        search_items=int(split.train.shape[1]),
        stopped=stopped,
    )


def tune_split(split: Split, model: Model, base_settings: Any, **kwargs: Any) -> TuningResult:
    """:func:`tune` on ``split.train``: the evaluation split's test part is never read."""
    return tune(split.train, model, base_settings, **kwargs)


def ranking_agreement(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Rank agreement of two scorings of the same candidates (e.g. a user sample's vs the full data's).

    ``a`` and ``b`` map candidate keys to objective values; only keys in both with finite values count.
    Returns ``spearman`` (Pearson correlation of the average ranks) and ``kendall`` (tau-b, tie-corrected)
    and ``n`` (candidates compared); NaN when fewer than two.
    """
    from scipy.stats import kendalltau, spearmanr

    keys = [key for key in a if key in b and math.isfinite(a[key]) and math.isfinite(b[key])]
    if len(keys) < 2:
        return {"spearman": math.nan, "kendall": math.nan, "n": float(len(keys))}
    x = np.array([a[key] for key in keys])
    y = np.array([b[key] for key in keys])
    return {
        "spearman": float(spearmanr(x, y).statistic),
        "kendall": float(kendalltau(x, y).statistic),
        "n": float(len(keys)),
    }
