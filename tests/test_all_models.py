"""Every registered model at once through the real refresh path: each one's rows in every table, the
report, the CLI, and rankings by the model's own score where it has one."""

from __future__ import annotations

import dataclasses

import dagster as dg
import numpy as np
import pytest

from recsys_assets.catalog import Catalog
from recsys_assets.cli import main
from recsys_assets.core.models import get_model, registry
from recsys_assets.core.topk import topk_dot
from recsys_assets.definitions import build_definitions
from recsys_assets.refresh import refresh
from recsys_assets.settings import Settings
from recsys_assets.storage import ARTIFACT_DIR, load_artifact
from tests.conftest import tiny_settings

# Iterative models run a few steps only: this test is about wiring, not quality.
STEPS = 3
STEP_FIELDS = ("iterations", "epochs", "max_epochs")


def all_models_settings() -> Settings:
    """Tiny synthetic data with every registered model enabled; nets as the ``mlp``, whose ranking is
    its network rather than a dot product of its factors."""
    names = tuple(registry())
    changes: dict[str, dict] = {"models": {"enabled": list(names)}}
    for name in names:
        section = Settings().model_settings(name)
        fields = {f.name for f in dataclasses.fields(section)}
        changes[name] = {
            field: min(getattr(section, field), STEPS) for field in STEP_FIELDS if field in fields
        }
    changes["nets"] = changes.get("nets", {}) | {"architecture": "mlp"}
    return tiny_settings(**changes)


@pytest.fixture(scope="module")
def all_models(tmp_path_factory):
    home = tmp_path_factory.mktemp("all_models_home")
    settings = all_models_settings()
    defs = build_definitions(settings, home)
    instance = dg.DagsterInstance.ephemeral()
    result = refresh(defs, instance, log=lambda _: None)
    return settings, home, instance, result


@pytest.mark.slow
def test_every_registered_model_reaches_every_table_the_report_and_the_cli(
    all_models, tmp_path, monkeypatch, capsys
):
    settings, home, _, result = all_models
    names = settings.models.enabled
    assert set(names) == set(registry()) and {"pmf", "gravity", "nets"} <= set(names)
    for name in names:
        assert {f"{name}_factors", f"{name}_ann_index", f"eval_{name}_factors"} <= set(result.materialized)
    n_users, n_artists = settings.synthetic.n_users, settings.synthetic.n_artists
    with Catalog(home).connect() as conn:

        def per_model(table: str) -> dict[str, int]:
            return dict(conn.execute(f"SELECT model::VARCHAR, count(*) FROM {table} GROUP BY 1").fetchall())

        artist_factors, related, recommendations = (
            per_model(t) for t in ("artist_factors", "related_artists", "recommendations")
        )
        evaluation = conn.execute("SELECT model, metric FROM evaluation").fetchall()
        users = [r[0] for r in conn.execute("SELECT user_key FROM users ORDER BY user_id LIMIT 2").fetchall()]
        artist = conn.execute(
            "SELECT a.name FROM related_artists r JOIN artists a USING (artist_id) ORDER BY r.artist_id LIMIT 1"
        ).fetchone()[0]
    metrics = {m: {metric for model, metric in evaluation if model == m} for m in names}
    report = (home / "artifacts" / "evaluation_report.html").read_text()
    for name in names:
        assert artist_factors[name] == n_artists, name
        assert related[name] >= 0.95 * n_artists * settings.related.n, name
        assert recommendations[name] == n_users * settings.recommend.n, name
        assert {"precision", "map", "ndcg", "auc", "mpr"} <= metrics[name], name
        # RMSE / MAE exactly for the models that predict values.
        assert ({"rmse", "mae"} <= metrics[name]) == get_model(name).predicts_values, name
        assert name in report, name
    assert get_model("pmf").predicts_values and get_model("gravity").predicts_values

    cfg = tmp_path / "recsys.toml"
    cfg.write_text("[models]\nenabled = [" + ", ".join(f'"{n}"' for n in names) + "]\n")
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_CONFIG", str(cfg))
    for name in names:
        assert main(["related", artist, "--model", name, "-n", "3"]) == 0, name
        assert len(capsys.readouterr().out.strip().splitlines()) >= 4, name  # header + 3 rows
        assert main(["recommend", users[0], "--model", name, "-n", "3"]) == 0, name
        assert len(capsys.readouterr().out.strip().splitlines()) >= 4, name


@pytest.mark.slow
def test_a_model_with_its_own_score_is_ranked_by_it(all_models):
    """nets (mlp) recommends and is evaluated by its network: the stored lists are the network's top-n,
    not the dot product of its factors."""
    settings, home, _, _ = all_models

    def stored(asset: str):
        return load_artifact(home / ARTIFACT_DIR / f"{asset}.npz")

    factors = stored("nets_factors")
    assert factors.network, "the mlp's weights travel with its factor set"
    plays = stored("play_matrix")
    n = settings.recommend.n
    expected, _ = get_model("nets").top_n(factors, n, exclude=plays)
    by_dot, _ = topk_dot(factors.user_factors, factors.item_factors, n, exclude=plays)
    with Catalog(home).connect() as conn:
        rows = conn.execute(
            "SELECT user_id, rank, artist_id FROM recommendations WHERE model = 'nets'"
        ).fetchnumpy()
    lists = np.full(expected.shape, -1, dtype=np.int64)
    lists[rows["user_id"], rows["rank"] - 1] = rows["artist_id"]
    np.testing.assert_array_equal(lists, expected)
    assert (lists != by_dot).any()  # the network's ranking is not the embeddings' dot product

    # The evaluation ranked by the network too: its precision is the one Model.evaluate computes.
    split, held_out = stored("train_test_split"), stored("eval_nets_factors")
    report = get_model("nets").evaluate(held_out, split.train, split.test, k=settings.evaluation.k)
    with Catalog(home).connect() as conn:
        stored_precision = conn.execute(
            "SELECT value FROM evaluation WHERE model = 'nets' AND metric = 'precision'"
        ).fetchone()[0]
    assert stored_precision == pytest.approx(report.precision, rel=1e-12)
