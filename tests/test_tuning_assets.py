"""The tuning assets end to end on tiny synthetic data: the chosen settings feed the fits, an unchanged
best stops the cascade, settings the file writes are never overridden, and "off" leaves the graph as it was."""

from __future__ import annotations

import json

import dagster as dg
import numpy as np
import pytest

from recsys_assets.catalog import Catalog
from recsys_assets.core.models import get_model
from recsys_assets.pipeline.factors import fit_model
from recsys_assets.pipeline.tuning import TunedSettings, tuned_input
from recsys_assets.settings import CPU_COUNT, Settings, load_settings, settings_from_dict
from recsys_assets.storage import ARTIFACT_DIR, load_artifact

pytestmark = pytest.mark.slow


def _tuned_settings() -> Settings:
    """ALS only; the file writes [als] factors and regularization and the weighting's scheme and
    orientation, so the search sweeps alpha and BM25's (K1, B) only: 3 x 2 candidates."""
    return settings_from_dict(RAW)


def _toml(raw: dict) -> str:
    def value(v):
        return json.dumps(v) if not isinstance(v, bool) else str(v).lower()

    return "\n".join(
        f"[{table}]\n" + "".join(f"{key} = {value(v)}\n" for key, v in values.items())
        for table, values in raw.items()
    )


RAW = dict(
    {
        "synthetic": {"n_users": 300, "n_artists": 300, "artists_per_user": 20.0, "n_genres": 6},
        "models": {"enabled": ["als"]},
        "als": {"factors": 8, "regularization": 1.0, "iterations": 4},
        "weighting": {"scheme": "bm25", "orientation": "artist_user"},
        "tuning": {"mode": "grid", "min_users": 50},
        "related": {"n": 10, "method": "exact"},
        "recommend": {"n": 10},
        "runtime": {"threads": min(2, CPU_COUNT), "duckdb_memory_limit": "1GB"},
    }
)


@pytest.fixture(scope="module")
def tuned_home(tmp_path_factory):
    from recsys_assets.definitions import build_definitions
    from recsys_assets.refresh import refresh

    home = tmp_path_factory.mktemp("tuned_home")
    (home / "recsys.toml").write_text(_toml(RAW))
    settings = load_settings(home / "recsys.toml")
    assert settings == _tuned_settings() and settings.explicit == _tuned_settings().explicit
    defs = build_definitions(settings, home)
    instance = dg.DagsterInstance.ephemeral()
    result = refresh(defs, instance, log=lambda _: None)
    return settings, home, defs, instance, result


def test_explicit_keys_are_recorded_and_fixed():
    settings = _tuned_settings()
    assert settings.fixed_for("als") == {"factors", "regularization", "iterations"} | {
        "weighting.scheme",
        "weighting.orientation",
    }
    assert Settings().fixed_for("als") == frozenset()


def test_off_keeps_the_graph_and_tuning_adds_one_asset_per_model():
    from recsys_assets.definitions import build_definitions

    def keys(settings):
        graph = build_definitions(settings).resolve_asset_graph()
        return {k.to_user_string() for k in graph.get_all_asset_keys()}

    off = keys(Settings())
    assert not any(k.endswith("_tuning") for k in off) and "weighted_matrix" in off
    tuned = keys(Settings().replace(tuning={"mode": "grid"}))
    assert tuned - off == {"als_tuning", "lsa_tuning"}
    assert off - tuned == {"weighted_matrix"}  # tuned models weight the play counts themselves


def test_tuning_table_and_explicit_settings_kept(tuned_home):
    settings, home, _, _, result = tuned_home
    assert {"als_tuning", "als_factors", "eval_als_factors"} <= set(result.materialized)
    with Catalog(home).connect() as conn:
        rows = conn.execute("SELECT weighting, settings, chosen, choice, value FROM tuning").fetchall()
        dims = conn.execute("SELECT DISTINCT len(factors) FROM artist_factors").fetchall()
        stopped = conn.execute("SELECT DISTINCT stopped FROM tuning").fetchall()
    assert stopped == [(False,)]  # no [tuning] budget_seconds: every planned fit ran
    assert len(rows) == 3 * 2
    assert sum(r[2] for r in rows) == 1
    assert all(set(json.loads(r[1])) == {"alpha"} for r in rows)  # nothing the file wrote was swept
    assert all(r[0].startswith("bm25/artist_user") for r in rows)
    chosen = next(r for r in rows if r[2])
    assert chosen[4] == max(r[4] for r in rows)
    document = json.loads(chosen[3])
    assert document["settings"]["factors"] == 8 and document["settings"]["regularization"] == 1.0
    assert document["settings"]["iterations"] == 4
    assert document["weighting"]["scheme"] == "bm25"
    assert document["settings"]["alpha"] == pytest.approx(json.loads(chosen[1])["alpha"])
    assert dims == [(8,)]


def test_chosen_settings_feed_the_production_fit(tuned_home):
    settings, home, *_ = tuned_home
    artifacts = home / ARTIFACT_DIR
    tuned = load_artifact(artifacts / "als_tuning.npz")
    assert isinstance(tuned, TunedSettings)
    published = load_artifact(artifacts / "als_factors.npz")
    plays = load_artifact(artifacts / "play_matrix.npz")
    model = get_model("als")
    section = tuned.section(model.settings)
    refit = fit_model(model, tuned_input(model, plays, tuned), section, settings.runtime.threads)
    # Same deterministic kernel, same seed and input: identical up to float32 summation order.
    np.testing.assert_allclose(refit.item_factors, published.item_factors, rtol=1e-4, atol=1e-5)
    # ... and not what the settings file's own alpha gives, when the search moved it.
    if section.alpha != settings.als.alpha:
        untuned = fit_model(model, tuned_input(model, plays, tuned), settings.als, settings.runtime.threads)
        assert not np.allclose(untuned.item_factors, published.item_factors, atol=1e-3)


def test_unchanged_best_stops_the_cascade(tuned_home):
    from recsys_assets.refresh import refresh

    _, _, defs, instance, _ = tuned_home
    before = instance.get_latest_materialization_event(dg.AssetKey("als_factors")).run_id
    again = refresh(defs, instance, log=lambda _: None, force=["als_tuning"])
    assert "als_tuning" in again.materialized
    assert "als_factors" not in again.materialized and "eval_als_factors" not in again.materialized
    assert instance.get_latest_materialization_event(dg.AssetKey("als_factors")).run_id == before


def test_cli_fold_in_uses_the_tuned_settings(tuned_home, monkeypatch, capsys):
    from recsys_assets.cli import main
    from recsys_assets.core.foldin import fold_in_als, likes_row
    from recsys_assets.core.loaders import read_play_matrix

    _, home, *_ = tuned_home
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_CONFIG", str(home / "recsys.toml"))
    tuned = load_artifact(home / ARTIFACT_DIR / "als_tuning.npz")
    with Catalog(home).connect() as conn:
        liked = conn.execute(
            "SELECT artist_id, any_value(a.name) FROM plays JOIN artists a USING (artist_id) "
            "GROUP BY artist_id ORDER BY count(*) DESC, artist_id LIMIT 2"
        ).fetchall()
        plays = read_play_matrix(conn)
        rows = conn.execute("SELECT artist_id, factors FROM artist_factors ORDER BY artist_id").fetchall()
        names = dict(conn.execute("SELECT artist_id, name FROM artists").fetchall())
    assert main(["recommend", "--likes", ",".join(n for _, n in liked), "-n", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    Y = np.asarray([f for _, f in rows], dtype=np.float32)
    section = tuned.section(get_model("als").settings)
    row = likes_row(tuned.weighting().apply(plays), [i for i, _ in liked])
    scores = Y.astype(np.float64) @ fold_in_als(row, Y, section.alpha, section.regularization)
    scores[[i for i, _ in liked]] = -np.inf
    expected = [names[i] for i in np.argsort(-scores)[:3]]
    assert [line.split()[1:-1] for line in out[2:]] == [name.split() for name in expected]
