"""``[engine] kind = "spark"`` in the asset graph: which assets the engine is part of, the one-line
errors of a bad Spark setup at the command line, and the whole graph materialized on Spark (local
mode and a standalone cluster on localhost) through the real refresh path."""

from __future__ import annotations

import importlib.util
import socket
import sys
import time

import dagster as dg
import pytest

from recsys_assets.cli import main
from recsys_assets.definitions import build_definitions
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.refresh import materializable_keys, refresh, stale_or_missing
from tests.conftest import HETREC_DIR, hetrec_available, tiny_settings

needs_pyspark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None,
    reason='pyspark not installed (pip install -e ".[spark]"; CI installs it)',
)
# The assets whose heavy stage the engine runs: exactly these carry it in their code versions.
ENGINE_ASSETS = {"weighted_matrix", "als_factors", "recommendations", "eval_als_factors"}
LOCAL_TWO = {"kind": "spark", "master": "local[2]"}


def code_versions(settings, home) -> dict[str, str]:
    graph = build_definitions(settings, home).resolve_asset_graph()
    return {key.to_user_string(): graph.get(key).code_version for key in graph.materializable_asset_keys}


@needs_pyspark
def test_the_engine_is_part_of_exactly_the_assets_it_runs(tmp_path):
    local = code_versions(tiny_settings(), tmp_path)
    spark = code_versions(tiny_settings(engine=LOCAL_TWO), tmp_path)
    assert {name for name in local if local[name] != spark[name]} == ENGINE_ASSETS
    # Another master or Spark conf entry re-runs the same assets; where files are handed over does not.
    other = code_versions(tiny_settings(engine=LOCAL_TWO | {"conf": {"spark.driver.memory": "2g"}}), tmp_path)
    assert {name for name in spark if spark[name] != other[name]} == ENGINE_ASSETS
    moved = code_versions(tiny_settings(engine=LOCAL_TWO | {"data_uri": str(tmp_path / "x")}), tmp_path)
    assert moved == spark
    # With the local engine, Spark's settings are read by nothing.
    assert code_versions(tiny_settings(engine={"master": "local[3]", "data_uri": "/x"}), tmp_path) == local
    assert EngineSettings().fingerprint_part() == ("local",)


@needs_pyspark
def test_spark_graph_registers_a_lazy_pyspark_resource(tmp_path):
    defs = build_definitions(tiny_settings(engine=LOCAL_TWO), tmp_path)
    resource = defs.resources["pyspark"]
    assert type(resource).__name__ == "LazyPySparkResource"
    assert resource.spark_config["spark.master"] == "local[2]"
    graph = defs.resolve_asset_graph()
    spark_kinds = {
        k.to_user_string() for k in graph.materializable_asset_keys if "spark" in graph.get(k).kinds
    }
    assert spark_kinds == ENGINE_ASSETS
    assert "pyspark" not in build_definitions(tiny_settings(), tmp_path).resources


@pytest.fixture
def spark_cli(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    config = tmp_path / "recsys.toml"
    monkeypatch.setenv("RECSYS_CONFIG", str(config))

    def run(engine: str, *command: str) -> None:
        config.write_text(f'[runtime]\nthreads = 1\n[engine]\nkind = "spark"\n{engine}\n')
        assert main(list(command) or ["refresh"]) == 1

    return run


def _only_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and "\tat " not in err and "Stack Trace" not in err, err
    assert len(err.splitlines()) == 1, err
    return err


@needs_pyspark
def test_an_unreachable_master_is_one_line_before_any_asset_runs(spark_cli, capsys):
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    spark_cli(f'master = "spark://127.0.0.1:{port}"')
    line = _only_line(capsys)
    assert line.startswith("recsys: Spark master spark://127.0.0.1:") and "unreachable" in line


def test_no_pyspark_is_one_line_saying_what_to_install(spark_cli, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyspark", None)
    spark_cli('master = "local[2]"')
    line = _only_line(capsys)
    assert line.startswith("recsys: ") and 'pip install -e ".[spark]"' in line


def test_no_java_is_one_line_saying_what_to_install(spark_cli, capsys, monkeypatch, tmp_path):
    if importlib.util.find_spec("pyspark") is None:
        monkeypatch.setitem(sys.modules, "pyspark", sys)  # any module: the Java check comes next
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "no-jdk"))
    spark_cli('master = "local[2]"')
    line = _only_line(capsys)
    assert line.startswith("recsys: JAVA_HOME=") and "OpenJDK 17" in line


# ---------------------------------------------------------------------------------------------------
# The whole graph on Spark.


def _refresh_on(engine: dict, home, instance) -> tuple[dg.Definitions, list[str], float]:
    settings = tiny_settings(engine=engine)
    start = time.perf_counter()
    defs = build_definitions(settings, home)
    result = refresh(defs, instance, log=lambda _: None)
    return defs, result.materialized, time.perf_counter() - start


def _check_spark_outputs(defs, instance, home) -> None:
    from recsys_assets.catalog import Catalog

    for name in ENGINE_ASSETS:
        event = instance.get_latest_materialization_event(dg.AssetKey(name))
        assert event is not None, name
    metadata = instance.get_latest_materialization_event(
        dg.AssetKey("eval_als_factors")
    ).asset_materialization
    precision = metadata.metadata["spark_precision"].value
    assert 0.0 < precision <= 1.0
    with Catalog(home).connect() as conn:
        n_recs = conn.execute("SELECT count(*) FROM recommendations WHERE model = 'als'").fetchone()[0]
        played = conn.execute(
            "SELECT count(*) FROM recommendations JOIN plays USING (user_id, artist_id)"
        ).fetchone()[0]
    assert n_recs > 0
    assert played == 0, "a recommendation is an artist the user already played"


@pytest.mark.slow
@needs_pyspark
def test_switching_to_spark_reruns_exactly_the_engine_assets_and_what_reads_them(tmp_path):
    """Local first, then Spark in local[2]: the engine's assets and their descendants re-run (through the
    real refresh path), nothing upstream; a second Spark refresh runs nothing."""
    instance = dg.DagsterInstance.ephemeral()
    defs, first, _ = _refresh_on({}, tmp_path, instance)
    assert set(first) == {k.to_user_string() for k in materializable_keys(defs)}
    spark_defs = build_definitions(tiny_settings(engine=LOCAL_TWO), tmp_path)
    planned = stale_or_missing(spark_defs, instance)
    # The planner's root causes are the engine's assets (their code versions), nothing else.
    assert set(planned) >= ENGINE_ASSETS
    roots = {cause.split(":")[0] for reason in planned.values() for cause in reason.split("; ")}
    assert roots == ENGINE_ASSETS, planned
    defs, second, seconds = _refresh_on(LOCAL_TWO, tmp_path, instance)
    assert set(second) >= ENGINE_ASSETS
    assert not {"raw_plays", "play_matrix", "train_test_split"} & set(second)
    _check_spark_outputs(defs, instance, tmp_path)
    _, third, _ = _refresh_on(LOCAL_TWO, tmp_path, instance)
    assert third == []
    print(f"spark local[2] refresh of the tiny graph: {seconds:.1f} s")


@pytest.mark.slow
@needs_pyspark
def test_whole_graph_on_a_standalone_cluster(tmp_path):
    from recsys_assets.engines.standalone import standalone_cluster

    instance = dg.DagsterInstance.ephemeral()
    with standalone_cluster(workers=2, cores=1, memory="1g", log_dir=tmp_path / "cluster") as cluster:
        engine = {"kind": "spark", "master": cluster.master, "conf": {"spark.executor.memory": "768m"}}
        try:
            defs, materialized, _ = _refresh_on(engine, tmp_path / "home", instance)
        finally:
            from pyspark.sql import SparkSession

            active = SparkSession.getActiveSession()
            if active is not None:
                active.stop()
    assert set(materialized) == {k.to_user_string() for k in materializable_keys(defs)}
    _check_spark_outputs(defs, instance, tmp_path / "home")


def test_spark_assets_take_their_stages_from_the_pyspark_resource(tmp_path, monkeypatch):
    """The four Spark assets called directly with a stand-in for the Spark stages (no JVM): each passes
    its inputs to the right stage, with the session of the ``pyspark`` resource, and returns the
    stage's result in the shape its single-machine twin does."""
    import numpy as np
    import scipy.sparse as sp
    from dagster_duckdb import DuckDBResource

    from recsys_assets.assets import spark as spark_assets
    from recsys_assets.core.factorset import FactorSet
    from recsys_assets.core.split import random_split
    from recsys_assets.resources import RecsysStore

    rng = np.random.default_rng(0)
    X = sp.random(30, 20, density=0.3, format="csr", random_state=0, dtype=np.float32)
    X.data[:] = rng.integers(1, 9, X.nnz)
    factors = FactorSet(
        model="als",
        user_factors=rng.random((30, 4), np.float32),
        item_factors=rng.random((20, 4), np.float32),
        curves={"spark": {"fit_seconds": [1.5], "reg_param": [0.1], "alpha": [2.0]}},
    )
    seen = []

    class Stages:
        def weighted_matrix(self, conn, shape, weighting):
            seen.append(("weighted_matrix", shape, weighting.scheme))
            return X * 2

        def als_factors_of(self, matrix, als):
            seen.append(("als_factors_of", matrix.shape, als.factors))
            return factors

        def recommendations(self, f, played, n):
            seen.append(("recommendations", f.model, played.shape, n))
            ids = np.tile(np.arange(n, dtype=np.int32), (played.shape[0], 1))
            return ids, np.ones_like(ids, dtype=np.float32)

        def evaluation(self, train, test, weighting, als, k):
            seen.append(("evaluation", train.shape, k))
            return factors, {"k": float(k), "precision": 0.25, "n_users": 30.0}

    session = object()

    class Resource:
        spark_session = session

    def stages(pyspark, engine, home):
        assert pyspark.spark_session is session and home == str(tmp_path)
        return Stages()

    monkeypatch.setattr(spark_assets, "spark_stages", stages)
    settings = tiny_settings(engine=LOCAL_TWO, recommend={"n": 3}, evaluation={"k": 5})
    defs = build_definitions(settings, tmp_path)
    graph = {a.key.to_user_string(): a for a in defs.assets if hasattr(a, "key")}
    resources = {
        "warehouse": DuckDBResource(database=str(tmp_path / "warehouse.duckdb")),
        "store": RecsysStore(home=str(tmp_path)),
        "pyspark": Resource(),
    }
    W = graph["weighted_matrix"](
        play_matrix=X, **{k: resources[k] for k in ("warehouse", "store", "pyspark")}
    )
    assert (W.value != X * 2).nnz == 0 and W.metadata["engine"].value == "spark local[2]"
    out = graph["als_factors"](matrix=W.value, **resources)
    assert out.value is factors and out.metadata["spark_fit_seconds"].value == 1.5
    assert out.value.curves == {}  # Spark's fit record moved to the metadata
    recs = graph["recommendations"](play_matrix=X, als_factors=factors, lsa_factors=factors, **resources)
    assert recs.metadata["dagster/row_count"] == 2 * 30 * 3
    split = random_split(X, test_fraction=0.2, seed=0)
    context = dg.build_asset_context()
    ev = graph["eval_als_factors"](
        context, train_test_split=split, store=resources["store"], pyspark=Resource()
    )
    assert ev.metadata["spark_precision"].value == 0.25 and ev.metadata["k"].value == 5
    assert [s[0] for s in seen] == [
        "weighted_matrix",
        "als_factors_of",
        "recommendations",
        "recommendations",
        "evaluation",
    ]
    assert seen[2][3] == 3 and seen[-1][2] == 5


@pytest.mark.slow
@needs_pyspark
@pytest.mark.skipif(not hetrec_available(), reason=f"HetRec data not found at {HETREC_DIR}")
def test_whole_graph_on_hetrec_in_local_mode(tmp_path):
    """HetRec through the real refresh path on Spark local[2] (``split = "random"``): every asset
    materializes and a generation is published; the published ALS p@10 (Spark's factors, evaluated as
    every model is) is within 0.01 of the numba ALS fitted here on the same split and weighting; no
    recommended artist is one the user played."""
    import duckdb

    from recsys_assets.catalog import Catalog
    from recsys_assets.core.loaders import load_hetrec, read_play_matrix
    from recsys_assets.core.metrics import evaluate_factors
    from recsys_assets.core.models.als import fit as numba_als
    from recsys_assets.pipeline.evaluation import make_split
    from recsys_assets.pipeline.matrices import apply_weighting
    from recsys_assets.settings import Settings

    settings = Settings().replace(
        data={"source": "hetrec", "path": str(HETREC_DIR)},
        evaluation={"split": "random"},
        runtime={"threads": 2},
        engine=LOCAL_TWO,
    )
    home, instance = tmp_path / "home", dg.DagsterInstance.ephemeral()
    try:
        defs = build_definitions(settings, home)
        result = refresh(defs, instance, log=lambda _: None)
    finally:
        from pyspark.sql import SparkSession

        active = SparkSession.getActiveSession()
        if active is not None:
            active.stop()
    assert set(result.materialized) == {k.to_user_string() for k in materializable_keys(defs)}
    _check_spark_outputs(defs, instance, home)
    with Catalog(home).connect() as conn:
        published = conn.execute(
            "SELECT value FROM evaluation WHERE model = 'als' AND metric = 'precision' AND k = 10"
        ).fetchall()
    assert len(published) == 1

    conn = duckdb.connect()
    load_hetrec(conn, HETREC_DIR)
    split = make_split(read_play_matrix(conn), **settings.evaluation.split_params())
    ours = numba_als(apply_weighting(split.train, settings.weighting), settings.als, threads=2)
    reference = evaluate_factors(
        ours.user_factors, ours.item_factors, split.train, split.test, k=10, threads=2
    )
    assert abs(published[0][0] - reference.precision) <= 0.01, (published[0][0], reference.precision)
    assert reference.precision > 0.18  # both far above popularity (0.077), not two broken models
