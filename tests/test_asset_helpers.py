"""Small pieces of the Dagster layer that carry logic of their own."""

from __future__ import annotations

import shutil

import duckdb
import numpy as np
import pandas as pd
import pytest

from recsys_assets.assets._common import code_version, table_version
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.pipeline.answers import planted_alias_recall, top_n_frame
from recsys_assets.pipeline.indexes import build_ann_index, open_index, related_method
from recsys_assets.settings import AnnSettings, RelatedSettings
from tests.conftest import tiny_settings


def test_related_method_auto_switches_on_catalogue_size():
    auto = RelatedSettings(method="auto", exact_max_artists=1000)
    assert related_method(auto, 1000) == "exact"
    assert related_method(auto, 1001) == "ann"
    assert related_method(RelatedSettings(method="ann"), 10) == "ann"
    assert related_method(RelatedSettings(method="exact"), 10**6) == "exact"


def test_top_n_frame_drops_padding_and_ranks_from_one():
    ids = np.array([[3, 1, -1], [-1, -1, -1]], dtype=np.int32)
    scores = np.array([[0.9, 0.5, -np.inf], [-np.inf] * 3], dtype=np.float32)
    frame = top_n_frame("als", ids, scores, "artist_id", "related_id")
    assert frame[["artist_id", "rank", "related_id"]].values.tolist() == [[0, 1, 3], [0, 2, 1]]
    assert (frame["model"] == "als").all()


def test_top_n_frames_hold_the_model_as_a_category_and_load_as_text():
    ids = np.arange(12, dtype=np.int32).reshape(4, 3)
    scores = np.ones((4, 3), dtype=np.float32)
    frames = [
        top_n_frame(m, ids, scores, "user_id", "artist_id", models=("als", "lsa")) for m in ("als", "lsa")
    ]
    table = pd.concat(frames, ignore_index=True)
    # No Python string per row: the concatenated column stays a one-byte categorical.
    assert isinstance(table["model"].dtype, pd.CategoricalDtype)
    assert table["model"].cat.codes.dtype == np.int8
    assert table["model"].value_counts().to_dict() == {"als": 12, "lsa": 12}
    conn = duckdb.connect()
    conn.execute(
        "CREATE TABLE t (model VARCHAR, user_id INTEGER, rank INTEGER, artist_id INTEGER, score REAL)"
    )
    conn.register("frame", table)
    conn.execute("INSERT INTO t BY NAME SELECT * FROM frame")
    assert conn.execute("SELECT model, count(*) FROM t GROUP BY model ORDER BY model").fetchall() == [
        ("als", 12),
        ("lsa", 12),
    ]
    with pytest.raises(ValueError, match="categories"):
        top_n_frame("bpr", ids, scores, "user_id", "artist_id", models=("als", "lsa"))


def test_planted_alias_recall_counts_pairs_in_the_top_candidates():
    settings = tiny_settings()
    planted = generate_plays(**vars(settings.synthetic)).alias_pairs
    n = len(planted)
    # The first half of the planted pairs (in either order) at the top, then decoys.
    found = [(int(b), int(a)) for a, b in planted[: n // 2]]
    decoys = [(10_000 + i, 20_000 + i) for i in range(3 * n)]
    table = pd.DataFrame(
        {
            "model": "als",
            "artist_id": [p[0] for p in found + decoys],
            "alias_id": [p[1] for p in found + decoys],
            "score": np.arange(len(found) + len(decoys), 0, -1, dtype=float),
        }
    )
    assert planted_alias_recall(table, settings.synthetic) == {"planted_alias_recall_als": (n // 2) / n}


def test_table_version_follows_content_not_order():
    conn = duckdb.connect()
    conn.execute("CREATE TABLE t AS SELECT * FROM (VALUES (1, 'a'), (2, 'b')) v(x, y)")
    v1 = table_version(conn, "t")
    conn.execute("CREATE OR REPLACE TABLE t AS SELECT * FROM (VALUES (2, 'b'), (1, 'a')) v(x, y)")
    assert table_version(conn, "t") == v1
    conn.execute("UPDATE t SET y = 'c' WHERE x = 1")
    assert table_version(conn, "t") != v1


def test_code_version_combines_code_and_settings():
    a = code_version("x-1", {"k1": 1.0})
    assert a.startswith("x-1+") and a == code_version("x-1", {"k1": 1.0})
    assert a != code_version("x-1", {"k1": 2.0}) and a != code_version("x-2", {"k1": 1.0})


def test_non_finite_factors_fail_the_asset_with_counts_and_nothing_is_written(tmp_path):
    """The asset is the guard (a check would run after the materialization was recorded): a fit with
    NaN or infinite factors fails with the counts, and the tables keep the previous fit."""
    import pytest
    from dagster_duckdb import DuckDBResource

    from recsys_assets.assets.factors import factor_output
    from recsys_assets.core.factorset import FactorSet
    from recsys_assets.pipeline.factors import NonFiniteFactorsError
    from recsys_assets.storage import LEDGER_TABLE

    warehouse = DuckDBResource(database=str(tmp_path / "warehouse.duckdb"))
    good = FactorSet("als", np.ones((3, 2), np.float32), np.ones((4, 2), np.float32), "fp")
    recorded = factor_output(good, warehouse).data_version.value
    bad_items = good.item_factors.copy()
    bad_items[1, 0], bad_items[2, 1] = np.nan, np.inf
    bad = FactorSet("als", good.user_factors * 2, bad_items, "fp2")
    with pytest.raises(
        NonFiniteFactorsError, match=r"2 of 8 item_factors are NaN or infinite\): nothing was written"
    ):
        factor_output(bad, warehouse)
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as conn:
        assert conn.execute("SELECT DISTINCT settings_fingerprint FROM user_factors").fetchall() == [("fp",)]
        assert conn.execute("SELECT count(*) FROM artist_factors").fetchone()[0] == 4
        ledger = conn.execute(f"SELECT asset, data_version FROM {LEDGER_TABLE}").fetchall()
    assert ledger == [("als_factors", recorded)]


def test_an_index_reference_follows_a_moved_home(tmp_path):
    """IndexRef records its file relative to the home: a copied home opens its own index after the
    original is deleted (the old absolute path pointed into the original)."""
    rng = np.random.default_rng(0)
    factors = FactorSet(
        "als", rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=(60, 8)).astype(np.float32), "f"
    )
    ann = AnnSettings(n_trees=4)
    original = tmp_path / "home"
    (original / "artifacts").mkdir(parents=True)
    ref = build_ann_index(factors, ann, original / "artifacts" / "als_ann_index.ann", 1, original)
    assert ref.path == "artifacts/als_ann_index.ann"
    expected = open_index(ref, original, 5).query(factors.item_factors[:3], 5)
    moved = tmp_path / "elsewhere" / "home"
    shutil.copytree(original, moved)
    shutil.rmtree(original)
    got = open_index(ref, moved, 5).query(factors.item_factors[:3], 5)
    np.testing.assert_array_equal(got[0], expected[0])
