"""The Spark engine: settings, one-line errors, and the Spark stages on HetRec in local[2] mode and on a
standalone cluster on localhost, checked against the single-machine code on the same split."""

from __future__ import annotations

import importlib.util
import socket
from types import SimpleNamespace

import duckdb
import numpy as np
import pytest

from recsys_assets.core.metrics import evaluate_factors, evaluate_ranked_lists
from recsys_assets.core.models.als import AlsSettings
from recsys_assets.core.models.als import fit as numba_als
from recsys_assets.core.sections import SettingsError
from recsys_assets.core.split import random_split
from recsys_assets.core.topk import topk_dot
from recsys_assets.core.weighting import weight_user_items
from recsys_assets.engines import spark as engine
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.engines.spark_pipeline import SparkStages
from tests.conftest import HETREC_DIR, hetrec_available

needs_pyspark = pytest.mark.skipif(
    importlib.util.find_spec("pyspark") is None,
    reason='pyspark not installed (pip install -e ".[spark]"; CI installs it)',
)
needs_hetrec = pytest.mark.skipif(not hetrec_available(), reason=f"HetRec data not found at {HETREC_DIR}")
SPARK = EngineSettings(kind="spark", master="local[2]")


# ---------------------------------------------------------------------------------------------------
# Settings and errors (no JVM).


def test_engine_settings_defaults_and_checks(tmp_path):
    default = EngineSettings()
    assert (default.kind, default.master, default.conf, default.data_uri) == ("local", "local[*]", {}, "")
    assert default.handoff_uri(tmp_path) == str(tmp_path.resolve() / "spark")
    assert EngineSettings(data_uri="s3://bucket/recsys/").handoff_uri(tmp_path) == "s3://bucket/recsys"
    conf = EngineSettings(conf={"spark.executor.memory": "2g", "spark.ui.enabled": True})
    assert conf.spark_conf() == {"spark.executor.memory": "2g", "spark.ui.enabled": "true"}
    assert engine.session_config(conf)["spark.master"] == "local[*]"
    with pytest.raises(SettingsError, match=r"\[engine\] kind"):
        EngineSettings(kind="dask")
    with pytest.raises(SettingsError, match="start with 'spark.'"):
        EngineSettings(conf={"executor.memory": "2g"})
    with pytest.raises(SettingsError, match="string, number or boolean"):
        EngineSettings(conf={"spark.x": [1]})


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text and "\tat " not in text and "Traceback" not in text, text
    return text


def test_missing_java_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.check_java()
    assert "JAVA_HOME=" in _one_line(exc) and "OpenJDK 17" in str(exc.value)

    monkeypatch.delenv("JAVA_HOME")
    monkeypatch.setenv("PATH", str(tmp_path))  # a folder without java
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.check_java()
    assert "no Java found" in _one_line(exc) and "OpenJDK 17" in str(exc.value)


def test_old_java_is_refused(monkeypatch, tmp_path):
    fake = tmp_path / "jdk" / "bin" / "java"
    fake.parent.mkdir(parents=True)
    fake.write_text("#!/bin/sh\necho 'openjdk version \"11.0.2\" 2019-01-15' >&2\n")
    fake.chmod(0o755)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.check_java()
    assert "Java 11" in _one_line(exc) and "Java 17+" in str(exc.value)


def test_missing_pyspark_says_what_to_install(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "pyspark", None)
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.check_pyspark()
    assert 'pip install -e ".[spark]"' in _one_line(exc)


def test_bad_local_master_is_one_line():
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.check_master("local[two]")
    assert "local[two]" in _one_line(exc)


@needs_pyspark
def test_unreachable_master_is_one_line():
    with socket.socket() as s:  # a port nobody listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    master = f"spark://127.0.0.1:{port}"
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.spark_session(EngineSettings(kind="spark", master=master))
    assert master in _one_line(exc) and "unreachable" in str(exc.value)


@needs_pyspark
def test_missing_java_fails_the_session_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "nowhere"))
    with pytest.raises(engine.SparkEngineError) as exc:
        engine.spark_session(SPARK)
    assert "OpenJDK 17" in _one_line(exc)


def test_plays_export_round_trips(tmp_path):
    conn = duckdb.connect()
    conn.execute("CREATE TABLE plays (user_id INTEGER, artist_id INTEGER, plays DOUBLE)")
    conn.execute("INSERT INTO plays VALUES (2, 0, 5), (0, 3, 1), (0, 1, 7.5), (1, 3, 2)")
    path = engine.export_plays(conn, str(tmp_path / "handoff"))
    X = engine.read_pairs(path, (3, 4), "plays")
    expected = np.zeros((3, 4), np.float32)
    expected[2, 0], expected[0, 3], expected[0, 1], expected[1, 3] = 5, 1, 7.5, 2
    np.testing.assert_array_equal(X.toarray(), expected)


# ---------------------------------------------------------------------------------------------------
# The stages on HetRec.


@pytest.fixture(scope="module")
def hetrec():
    """(warehouse connection with HetRec loaded, play matrix, 80/20 random split with seed 0)."""
    from recsys_assets.core.loaders import load_hetrec, read_play_matrix

    conn = duckdb.connect()
    load_hetrec(conn, HETREC_DIR)
    X = read_play_matrix(conn)
    return conn, X, random_split(X, test_fraction=0.2, seed=0)


# The default [weighting] section (BM25 on artist_user), as the asset layer passes it.
DEFAULT_WEIGHTING = SimpleNamespace(
    scheme="bm25",
    orientation="artist_user",
    k1=100.0,
    b=0.8,
    tf="sqrt",
    alpha=40.0,
    confidence_scale="linear",
    confidence_epsilon=1.0,
)


def check_lists(lists, split, factors, n):
    """Every user with factors gets n unplayed artists; users without train plays get none."""
    train = split.train.tocsr()
    has_train = np.diff(train.indptr) > 0
    assert (lists[has_train] >= 0).all() and (lists[~has_train] == -1).all()
    for u in np.flatnonzero(has_train):
        played = train.indices[train.indptr[u] : train.indptr[u + 1]]
        assert not np.isin(lists[u], played).any(), u
        assert len(set(lists[u])) == n
    # The lists are the factors' own top-n among unplayed artists: their scores are the best ones.
    u = int(np.flatnonzero(has_train)[0])
    scores = factors.item_factors @ factors.user_factors[u]
    scores[train.indices[train.indptr[u] : train.indptr[u + 1]]] = -np.inf
    np.testing.assert_allclose(np.sort(scores[lists[u]])[::-1], np.sort(scores)[::-1][:n], rtol=1e-5)


@pytest.fixture(scope="module")
def local_spark():
    spark = engine.spark_session(SPARK)
    yield spark
    spark.stop()


@pytest.mark.slow
@needs_pyspark
@needs_hetrec
def test_spark_stages_on_hetrec_match_the_single_machine(local_spark, hetrec, tmp_path):
    conn, X, split = hetrec
    als = AlsSettings()
    stages = SparkStages(local_spark, str(tmp_path))

    # Weighting the warehouse's plays on Spark: the same BM25 (artist_user) values as core.weighting.
    weighted = stages.weighted_matrix(conn, X.shape, DEFAULT_WEIGHTING)
    W_full = weight_user_items(X)
    assert (weighted != 0).nnz == (W_full != 0).nnz
    np.testing.assert_allclose(weighted.toarray()[W_full.nonzero()], W_full.data, rtol=1e-6)

    # ALS quality: Spark with the mapped settings within 0.01 p@10 of our numba ALS on the same split.
    factors, metrics = stages.evaluation(split.train, split.test, DEFAULT_WEIGHTING, als, k=10)
    ours = numba_als(weight_user_items(split.train), als, threads=2)
    ours_p = evaluate_factors(ours.user_factors, ours.item_factors, split.train, split.test, k=10, threads=2)
    assert factors.model == "als" and factors.user_factors.shape == ours.user_factors.shape
    spark_p = evaluate_factors(
        factors.user_factors, factors.item_factors, split.train, split.test, k=10, threads=2
    )
    assert abs(spark_p.precision - ours_p.precision) <= 0.01, (spark_p.precision, ours_p.precision)
    assert spark_p.precision > 0.18  # far above popularity (0.078), not two equally broken models

    # The in-memory entry point (the weighted_matrix asset's value in) fits the same model.
    again = stages.als_factors_of(weight_user_items(split.train), als)
    again_p = evaluate_factors(
        again.user_factors, again.item_factors, split.train, split.test, k=10, threads=2
    )
    assert again_p.precision == pytest.approx(spark_p.precision, abs=0.002)

    # Spark's metrics equal the single-machine metrics code on the very same lists ...
    lists = engine.read_recommendations(str(tmp_path / "eval" / "top"), X.shape[0], 10)
    check_lists(lists, split, factors, 10)
    reference = evaluate_ranked_lists(lists, split.test, k=10, threads=2)
    for name in ("n_users", "precision", "recall", "map", "ndcg", "coverage"):
        assert metrics[name] == pytest.approx(getattr(reference, name), rel=1e-9, abs=1e-12), name
    # ... and the top-n stage ranks as the full evaluation does (ties aside).
    assert metrics["precision"] == pytest.approx(spark_p.precision, abs=0.002)

    # All-user recommendations on Spark from any factors: core.topk's lists, played artists removed.
    ids, scores = stages.recommendations(factors, split.train, 10)
    local_ids, local_scores = topk_dot(factors.user_factors, factors.item_factors, 10, exclude=split.train)
    np.testing.assert_allclose(scores, local_scores, rtol=1e-5, atol=1e-7)
    assert (ids == local_ids).mean() > 0.99  # equal but for near-ties in float32


@pytest.mark.slow
@needs_pyspark
@needs_hetrec
def test_spark_stages_on_a_standalone_cluster(hetrec, tmp_path):
    """One master and two one-core workers on localhost: the stages run through the cluster code path
    (executors in their own JVMs, shuffles between workers) and give a valid result."""
    from recsys_assets.engines.standalone import standalone_cluster

    conn, X, split = hetrec
    with standalone_cluster(workers=2, cores=1, memory="1g", log_dir=tmp_path / "cluster") as cluster:
        settings = EngineSettings(kind="spark", master=cluster.master, conf={"spark.executor.memory": "768m"})
        spark = engine.spark_session(settings)
        try:
            assert spark.sparkContext.master == cluster.master
            stages = SparkStages(spark, settings.handoff_uri(tmp_path))
            weighted = stages.weighted_matrix(conn, X.shape, DEFAULT_WEIGHTING)
            factors, metrics = stages.evaluation(
                split.train, split.test, DEFAULT_WEIGHTING, AlsSettings(iterations=5), k=10
            )
            executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
        finally:
            spark.stop()
    assert executors == 2
    np.testing.assert_allclose(weighted.toarray()[X.nonzero()], weight_user_items(X).data, rtol=1e-6)
    lists = engine.read_recommendations(str(tmp_path / "spark" / "eval" / "top"), X.shape[0], 10)
    check_lists(lists, split, factors, 10)
    reference = evaluate_ranked_lists(lists, split.test, k=10, threads=2)
    assert metrics["precision"] == pytest.approx(reference.precision, rel=1e-9)
    assert metrics["precision"] > 0.15
