"""Tuning: the search never reads the test split, finds a planted optimum, honours fixed settings."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, get_model
from recsys_assets.core.sections import NonNegativeFloat, PositiveFloat, PositiveInt, Section
from recsys_assets.core.split import Split, random_split
from recsys_assets.core.tuning import (
    TuningError,
    WeightingChoice,
    default_grid,
    default_weightings,
    ranking_agreement,
    tune,
    tune_split,
)
from recsys_assets.core.tuning_plots import tuning_heatmaps

N_USERS, N_ITEMS, RANK = 300, 120, 4


def _planted():
    """Plays from a rank-4 block model: users listen to artists of their own group only."""
    rng = np.random.default_rng(0)
    user_group = rng.integers(0, RANK, N_USERS)
    item_group = rng.integers(0, RANK, N_ITEMS)
    dense = np.zeros((N_USERS, N_ITEMS))
    for u in range(N_USERS):
        items = np.flatnonzero(item_group == user_group[u])
        chosen = rng.choice(items, size=12, replace=False)
        dense[u, chosen] = rng.integers(1, 50, size=12)
    truth_users = np.eye(RANK)[user_group]
    truth_items = np.eye(RANK)[item_group]
    return sp.csr_matrix(dense), truth_users, truth_items


X, TRUTH_USERS, TRUTH_ITEMS = _planted()


@dataclass(frozen=True)
class KnobSettings(Section):
    TABLE: ClassVar[str] = "knob"
    knob: PositiveInt = 1
    noise: NonNegativeFloat = 0.5
    learning_rate: PositiveFloat = 0.1


def _fit_knob(matrix, settings, *, threads, progress=None):
    """The planted truth blurred by ``|knob - 3|`` and ``noise``: knob 3 with noise 0 is the optimum.

    The groups are read from the data, so the factors fit any user sample and any subset of artist
    columns (a sampled search drops the artists nobody in the sample played): users play only their own
    group's artists, so the groups are the connected components of the co-listening graph.
    """
    binary = (matrix > 0).astype(np.float64)
    n_groups, labels = connected_components(binary.T @ binary, directed=False)
    truth = np.eye(n_groups)[labels]
    # Each user row's group: the group of its most played artist.
    users = truth[np.asarray(matrix.argmax(axis=1)).ravel()]
    rng = np.random.default_rng(7)
    blur = abs(settings.knob - 3) + settings.noise
    items = truth + blur * rng.standard_normal(truth.shape)
    return FactorSet("knob", users.astype(np.float32), items.astype(np.float32))


KNOB = Model(name="knob", description="planted", settings=KnobSettings, fit=_fit_knob, input="plays")
KNOB_GRID = {"knob": (1, 2, 3, 4, 5), "noise": (0.0, 1.0)}


def test_grid_picks_the_planted_optimum_and_reports_every_point():
    result = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="grid")
    assert (result.chosen_settings.knob, result.chosen_settings.noise) == (3, 0.0)
    assert result.chosen_settings.learning_rate == 0.1
    assert len(result.rows) == 10
    values = {(r["settings"]["knob"], r["settings"]["noise"]): r["objective"] for r in result.rows}
    assert values[3, 0.0] == max(values.values())
    table = result.table()
    assert sum(row["chosen"] for row in table) == 1
    assert {"model", "weighting", "settings", "value", "val_precision", "val_mpr", "seconds"} <= table[
        0
    ].keys()


@pytest.mark.parametrize("objective", ["mpr", "ndcg", "recall"])
def test_other_objectives_find_the_optimum_too(objective):
    result = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="grid", objective=objective)
    assert (result.chosen_settings.knob, result.chosen_settings.noise) == (3, 0.0)
    assert result.higher_is_better is (objective != "mpr")


def test_halving_and_random_search_reach_the_optimum():
    halving = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="halving", eta=2, min_users=40)
    assert (halving.chosen_settings.knob, halving.chosen_settings.noise) == (3, 0.0)
    rungs = sorted({r["rung"] for r in halving.rows})
    assert len(rungs) > 1
    first, last = (sum(r["rung"] == g for r in halving.rows) for g in (rungs[0], rungs[-1]))
    assert first == 10 and last < first
    sizes = [max(r["users"] for r in halving.rows if r["rung"] == g) for g in rungs]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
    full = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="random", budget=10)
    assert len(full.rows) == 10 and full.chosen_settings.knob == 3
    some = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="random", budget=4, seed=1)
    assert len(some.rows) == 4
    with pytest.raises(TuningError, match="budget"):
        tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="random")


def test_fixed_settings_are_never_swept():
    result = tune(X, KNOB, KnobSettings(knob=5), grid=KNOB_GRID, fixed={"knob"}, method="grid")
    assert result.chosen_settings.knob == 5
    assert {r["settings"].get("knob") for r in result.rows} == {None}
    assert result.swept == ("noise",)
    with pytest.raises(TuningError, match="does not have"):
        tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, fixed={"nope"})


def _poisoned(split: Split, how: str) -> Split:
    test = split.test.astype(np.float64).copy()
    if how == "nan":
        test.data[:] = np.nan
    elif how == "huge":
        test.data[:] = 1e30
    else:  # replaced by other entries altogether
        test = sp.random(*test.shape, density=0.3, random_state=np.random.default_rng(9), format="csr")
    return Split(split.train, test, split.method, split.seed, split.test_fraction)


@pytest.mark.parametrize("model_name", ["knob", "lsa"])
def test_the_tuner_never_reads_the_test_split(model_name):
    split = random_split(X, 0.2, seed=3)
    if model_name == "knob":
        model, base, kwargs = KNOB, KnobSettings(), {"grid": KNOB_GRID}
    else:
        model = get_model("lsa")
        base = model.settings()
        weightings = [WeightingChoice("bm25", "user_artist"), WeightingChoice("log")]
        kwargs = {"grid": {"factors": (2, 4, 8)}, "weightings": weightings}
    clean = tune_split(split, model, base, method="grid", **kwargs)
    for how in ("nan", "huge", "replaced"):
        poisoned = tune_split(_poisoned(split, how), model, base, method="grid", **kwargs)
        assert [r["metrics"] for r in poisoned.rows] == [r["metrics"] for r in clean.rows]
        assert poisoned.chosen_settings == clean.chosen_settings
        assert poisoned.chosen_weighting == clean.chosen_weighting


def test_lsa_searches_weightings_and_factors():
    model = get_model("lsa")
    weightings = [WeightingChoice("raw"), WeightingChoice("bm25", "user_artist")]
    result = tune(X, model, model.settings(), grid={"factors": (2, 4)}, weightings=weightings)
    assert len(result.rows) == 4
    assert result.swept == ("factors", "weighting")
    # rank-4 structure: 4 factors of any weighting beat 2 of the same weighting
    by = {(r["weighting"], r["settings"]["factors"]): r["objective"] for r in result.rows}
    for w in ("raw", weightings[1].label()):
        assert by[w, 4] > by[w, 2]
    pngs = tuning_heatmaps(result)
    assert set(pngs) == {("factors", "weighting")}
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())


def test_lsa_candidates_too_wide_for_the_data_are_skipped_not_fatal():
    model = get_model("lsa")
    result = tune(X, model, model.settings(), grid={"factors": (4, 500)}, weightings=[WeightingChoice("raw")])
    skipped = [r for r in result.rows if r["skipped"]]
    assert len(skipped) == 1 and math.isnan(skipped[0]["objective"])
    assert result.chosen_settings.factors == 4


def test_heatmaps_of_a_halving_search_cover_every_candidate():
    model = get_model("lsa")
    weightings = [WeightingChoice("raw"), WeightingChoice("log"), WeightingChoice("bm25", "user_artist")]
    result = tune(
        X,
        model,
        model.settings(),
        grid={"factors": (2, 4, 8)},
        weightings=weightings,
        method="halving",
        eta=2,
        min_users=60,
    )
    assert len({r["rung"] for r in result.rows}) > 1
    pngs = tuning_heatmaps(result)
    assert set(pngs) == {("factors", "weighting")}
    assert pngs["factors", "weighting"].startswith(b"\x89PNG")


def test_heatmaps_one_per_pair_with_the_chosen_cell():
    result = tune(X, KNOB, KnobSettings(), grid={**KNOB_GRID, "learning_rate": (0.1, 0.2)}, method="grid")
    pngs = tuning_heatmaps(result)
    assert set(pngs) == {("knob", "noise"), ("knob", "learning_rate"), ("noise", "learning_rate")}
    assert all(png.startswith(b"\x89PNG") for png in pngs.values())


def test_ranking_agreement_on_a_hand_computed_case():
    a = {"A": 1.0, "B": 2.0, "C": 3.0, "D": 4.0, "only_a": 9.0}
    b = {"A": 10.0, "B": 30.0, "C": 20.0, "D": 40.0, "E": float("nan")}
    got = ranking_agreement(a, b)
    # ranks (1,2,3,4) vs (1,3,2,4): sum d^2 = 2, rho = 1 - 6*2/(4*15) = 0.8;
    # one discordant pair (B, C) of 6: tau = (5 - 1) / 6
    assert got["n"] == 4
    assert got["spearman"] == pytest.approx(0.8)
    assert got["kendall"] == pytest.approx(4 / 6)
    assert math.isnan(ranking_agreement({"A": 1.0}, {"A": 2.0})["spearman"])


def test_default_grids():
    als = get_model("als")
    grid = default_grid("als", als.settings)
    assert set(grid) == {"alpha", "regularization", "factors"} and grid["alpha"][0] == "relative"
    assert default_grid("lsa", get_model("lsa").settings) == {"factors": (16, 32, 64, 128)}
    generic = default_grid("knob", KnobSettings)
    assert generic == {"learning_rate": pytest.approx((0.03, 0.1, 0.3))}

    @dataclass(frozen=True)
    class Other(Section):
        TABLE: ClassVar[str] = "other"
        factors: PositiveInt = 10
        regularization: NonNegativeFloat = 0.0

    assert default_grid("other", Other) == {"regularization": (0.0, 0.01, 0.1), "factors": (5, 10, 20)}


def test_default_weightings_and_pinned_fields():
    every = default_weightings(WeightingChoice())
    assert [w.scheme for w in every].count("bm25") == 4 and len(every) == 8
    assert {w.orientation for w in every if w.scheme in ("bm25", "tfidf")} == {"artist_user", "user_artist"}
    pinned = default_weightings(WeightingChoice(orientation="user_artist"), {"weighting.orientation"})
    assert {w.orientation for w in pinned} == {"user_artist"}
    assert len(pinned) == 5  # raw, log, tfidf, two bm25 (K1, B) pairs
    only = default_weightings(
        WeightingChoice(), {f"weighting.{f.name}" for f in dataclasses.fields(WeightingChoice)}
    )
    assert only == [WeightingChoice()]
    with pytest.raises(TuningError, match="unknown weighting"):
        default_weightings(WeightingChoice(), {"weighting.colour"})


def test_tuning_settings_give_the_search_arguments():
    from recsys_assets.core.sections import SettingsError
    from recsys_assets.core.tuning import TuningSettings

    with pytest.raises(TuningError, match="off"):
        TuningSettings().search_arguments()
    arguments = TuningSettings(mode="halving", objective="mpr", user_sample=100, eta=2).search_arguments()
    assert arguments["method"] == "halving" and arguments["user_sample"] == 100
    assert arguments["search_iterations"] is None and arguments["budget_seconds"] is None
    assert arguments["sample_plays"] == 1_000_000
    budgeted = TuningSettings(mode="grid", budget_seconds=30, sample_plays=0).search_arguments()
    assert budgeted["budget_seconds"] == 30 and budgeted["sample_plays"] is None
    result = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, **(arguments | {"min_users": 40}))
    assert (result.chosen_settings.knob, result.chosen_settings.noise) == (3, 0.0)
    with pytest.raises(SettingsError, match=r"\[tuning\] eta"):
        TuningSettings(eta=1)


def test_automatic_sample_scales_with_the_plays():
    from recsys_assets.core.tuning import automatic_sample

    matrix = sp.random(1000, 50, density=0.2, format="csr", random_state=np.random.default_rng(0))
    assert matrix.nnz == 10_000
    assert automatic_sample(matrix, None, None) is None
    assert automatic_sample(matrix, None, 10_000) is None  # at most sample_plays: every user
    assert automatic_sample(matrix, None, 2_500) == 250  # 1000 users * 2500 / 10000
    assert automatic_sample(matrix, 40, 2_500) == 40  # an explicit sample wins
    assert automatic_sample(matrix, None, 1) == 1


def test_a_sampled_search_drops_the_artists_nobody_in_the_sample_played():
    # 400 users, 600 artists: users 0-199 play only artists 0-99, the others only 100-599, so a sample
    # drawn from the first group alone has 100 columns; the sample is checked through the fitted shape.
    rng = np.random.default_rng(1)
    dense = np.zeros((400, 600))
    for u in range(400):
        pool = np.arange(100) if u < 200 else np.arange(100, 600)
        dense[u, rng.choice(pool, size=10, replace=False)] = rng.integers(1, 9, 10)
    seen = []
    base = get_model("lsa")

    def fit(matrix, settings, *, threads, progress=None):
        seen.append(matrix.shape)
        return base.fit(matrix, settings, threads=threads)

    spy = dataclasses.replace(base, name="lsa", fit=fit)
    result = tune(
        sp.csr_matrix(dense),
        spy,
        base.settings(),
        grid={"factors": (2,)},
        weightings=[WeightingChoice("raw")],
        method="grid",
        user_sample=50,
    )
    n_items = seen[0][1]
    assert seen[0][0] == 50 and n_items < 600
    assert (result.search_users, result.search_items) == (50, n_items)
    # every kept column has a play in the sample: the sample's users' artists, and only those
    sample_rows = result.search_users
    assert n_items <= sample_rows * 10


def _slow_knob(seconds: float):
    import time as _time

    def fit(matrix, settings, *, threads, progress=None):
        _time.sleep(seconds)
        return _fit_knob(matrix, settings, threads=threads)

    return dataclasses.replace(KNOB, fit=fit)


@pytest.mark.parametrize("method", ["grid", "halving"])
def test_a_time_budget_stops_the_search_and_keeps_the_best_so_far(method):
    slow = _slow_knob(0.05)
    kwargs = {"grid": KNOB_GRID, "method": method, "eta": 2, "min_users": 40}
    unlimited = tune(X, slow, KnobSettings(), **kwargs)
    assert not unlimited.stopped
    limited = tune(X, slow, KnobSettings(), budget_seconds=0.2, **kwargs)
    assert limited.stopped
    assert 1 <= len(limited.rows) < len(unlimited.rows)
    # the chosen row is the best of the furthest rung reached, among the rows fitted
    last = max(r["rung"] for r in limited.rows)
    final = [r for r in limited.rows if r["rung"] == last]
    assert limited.chosen_row["objective"] == max(r["objective"] for r in final)
    assert all(row["stopped"] for row in limited.table())
    assert not any(row["stopped"] for row in unlimited.table())
    # a budget the search fits in changes nothing
    roomy = tune(X, slow, KnobSettings(), budget_seconds=1e6, **kwargs)
    assert not roomy.stopped and len(roomy.rows) == len(unlimited.rows)
    assert roomy.chosen_settings == unlimited.chosen_settings


def test_auto_halves_on_a_sample_and_grids_the_whole_data():
    whole = tune(X, KNOB, KnobSettings(), grid=KNOB_GRID, method="auto", sample_plays=X.nnz, min_users=40)
    assert whole.method == "grid" and whole.search_users == X.shape[0] and len(whole.rows) == 10
    # more plays than sample_plays: half the users (150), and halving even though 10 <= max_grid
    sampled = tune(
        X, KNOB, KnobSettings(), grid=KNOB_GRID, method="auto", sample_plays=X.nnz // 2, min_users=40
    )
    assert sampled.method == "halving" and sampled.search_users == X.shape[0] // 2
    assert max(r["users"] for r in sampled.rows) <= X.shape[0] // 2
    assert (sampled.chosen_settings.knob, sampled.chosen_settings.noise) == (3, 0.0)
