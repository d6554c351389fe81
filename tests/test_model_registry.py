"""Adding a model is one module and one settings section: a test-only model, registered the way a real
one is (its module in the registry's package, its name in MODULES), appears in the graph, in every
published table, in the evaluation (with RMSE / MAE, as it predicts values) and in the CLI."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass
from typing import ClassVar

import dagster as dg
import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.linalg import svds

import recsys_assets.core.models as models_package
from recsys_assets.catalog import Catalog
from recsys_assets.cli import main
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model, registry
from recsys_assets.core.sections import PositiveInt, Section, Seed
from recsys_assets.definitions import build_definitions
from recsys_assets.pipeline.evaluation import value_errors
from recsys_assets.refresh import refresh
from recsys_assets.settings import load_settings
from tests.conftest import tiny_settings


@dataclass(frozen=True)
class LogSvdSettings(Section):
    """Truncated SVD of log(1 + plays)."""

    TABLE: ClassVar[str] = "logsvd"

    factors: PositiveInt = 8
    seed: Seed = 0


def _log1p(plays: sp.csr_matrix, settings: LogSvdSettings) -> sp.csr_matrix:
    out = sp.csr_matrix(plays, dtype=np.float64, copy=True)
    out.data = np.log1p(out.data)
    return out


def _fit(matrix: sp.csr_matrix, settings: LogSvdSettings, *, threads: int, progress=None) -> FactorSet:
    u, s, vt = svds(_log1p(matrix, settings), k=settings.factors, random_state=settings.seed)
    return FactorSet(
        model="logsvd",
        user_factors=np.ascontiguousarray(u * s, dtype=np.float32),
        item_factors=np.ascontiguousarray(vt.T, dtype=np.float32),
        user_offset=np.zeros(matrix.shape[0]),
    )


FAKE = Model(
    name="logsvd",
    description="Test-only model: truncated SVD of log(1 + plays).",
    settings=LogSvdSettings,
    fit=_fit,
    input="plays",
    kinds=("scipy",),
    predicts_values=True,
    value_transform=_log1p,
)


@pytest.fixture
def fake_model(monkeypatch):
    """Register the test-only model as its own module of the registry's package."""
    module = types.ModuleType(f"{models_package.__name__}.logsvd")
    module.MODEL = FAKE
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setattr(models_package, "MODULES", (*models_package.MODULES, "logsvd"))
    registry.cache_clear()
    yield FAKE
    registry.cache_clear()


def test_a_registered_model_has_its_settings_table(fake_model, tmp_path):
    cfg = tmp_path / "recsys.toml"
    cfg.write_text('[models]\nenabled = ["logsvd", "lsa"]\n[logsvd]\nfactors = 5\n')
    settings = load_settings(cfg)
    assert settings.model_settings("logsvd") == LogSvdSettings(factors=5)
    assert settings.logsvd.factors == 5
    assert [m.name for m in settings.enabled_models()] == ["logsvd", "lsa"]


def test_value_errors_are_rmse_and_mae_of_the_held_out_values():
    factors = FactorSet(
        "m",
        user_factors=np.array([[1.0], [2.0]], np.float32),
        item_factors=np.array([[1.0], [0.5], [3.0]], np.float32),
        user_offset=np.array([0.5, -1.0]),
    )
    # Predictions: (0, 1) = 0.5 + 0.5 = 1.0; (1, 2) = -1 + 6 = 5.0; held-out values 2.0 and 2.0.
    test = sp.csr_matrix(([2.0, 2.0], ([0, 1], [1, 2])), shape=(2, 3))
    errors = value_errors(factors, test)
    assert errors["rmse"] == pytest.approx(np.sqrt((1.0**2 + 3.0**2) / 2))
    assert errors["mae"] == pytest.approx((1.0 + 3.0) / 2)


@pytest.mark.slow
def test_a_new_model_runs_through_every_table_the_report_and_the_cli(
    fake_model, tmp_path, monkeypatch, capsys
):
    settings = tiny_settings(models={"enabled": ["logsvd", "lsa"]})
    home = tmp_path / "home"
    defs = build_definitions(settings, home)
    keys = {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()}
    assert {"logsvd_factors", "logsvd_ann_index", "eval_logsvd_factors"} <= keys
    assert not {"als_factors", "als_ann_index", "eval_als_factors"} & keys  # not enabled
    graph = defs.resolve_asset_graph()
    parents = {k.to_user_string() for k in graph.get(dg.AssetKey("logsvd_factors")).parent_keys}
    assert parents == {"play_matrix"}  # the model's input: raw plays, not the weighted matrix
    for shared in ("related_artists", "recommendations", "artist_aliases"):
        parents = {k.to_user_string() for k in graph.get(dg.AssetKey(shared)).parent_keys}
        assert "logsvd_factors" in parents and "lsa_factors" in parents, shared

    instance = dg.DagsterInstance.ephemeral()
    refresh(defs, instance, log=lambda _: None)
    with Catalog(home).connect() as conn:
        n_users, n_artists = settings.synthetic.n_users, settings.synthetic.n_artists

        def count(table: str) -> int:
            return conn.execute(f"SELECT count(*) FROM {table} WHERE model = 'logsvd'").fetchone()[0]

        assert count("artist_factors") == n_artists and count("user_factors") == n_users
        assert count("related_artists") >= 0.95 * n_artists * settings.related.n
        assert count("recommendations") == n_users * settings.recommend.n
        metrics = dict(conn.execute("SELECT metric, value FROM evaluation WHERE model = 'logsvd'").fetchall())
        lsa_metrics = {
            r[0] for r in conn.execute("SELECT metric FROM evaluation WHERE model = 'lsa'").fetchall()
        }
    assert {"precision", "ndcg", "mpr", "rmse", "mae"} <= set(metrics)
    assert "rmse" not in lsa_metrics  # a ranking-only model has no value errors
    assert 0 < metrics["mae"] <= metrics["rmse"]
    aliases = instance.get_latest_materialization_event(dg.AssetKey("artist_aliases"))
    assert "planted_alias_recall_logsvd" in aliases.asset_materialization.metadata
    assert "logsvd" in (home / "artifacts" / "evaluation_report.html").read_text()

    # The CLI answers for the new model; an unknown one is refused naming the enabled ones.
    cfg = tmp_path / "recsys.toml"
    cfg.write_text('[models]\nenabled = ["logsvd", "lsa"]\n')
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.setenv("RECSYS_CONFIG", str(cfg))
    with Catalog(home).connect() as conn:
        name = conn.execute(
            "SELECT a.name FROM related_artists r JOIN artists a USING (artist_id) "
            "WHERE r.model = 'logsvd' ORDER BY r.artist_id LIMIT 1"
        ).fetchone()[0]
    assert main(["related", name, "--model", "logsvd", "-n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) >= 4  # header + 3 rows
    assert main(["related", name, "--model", "als"]) == 1
    assert capsys.readouterr().err.strip() == (
        "recsys: --model als: not an enabled model; enabled models: logsvd, lsa "
        "([models] enabled in the settings file)"
    )

    # Changing the new model's setting re-runs its branch and the shared answers, nothing of lsa.
    changed = settings.replace(logsvd={"factors": 6})
    result = refresh(build_definitions(changed, home), instance, log=lambda _: None)
    assert set(result.materialized) == {
        "logsvd_factors",
        "logsvd_ann_index",
        "eval_logsvd_factors",
        "related_artists",
        "recommendations",
        "artist_aliases",
        "evaluation_report",
        "published_catalog",
    }
