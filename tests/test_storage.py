import dataclasses
import os

import duckdb
import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.storage import (
    ArtifactError,
    Catalog,
    FileHashCache,
    atomic_path,
    file_hash,
    load_artifact,
    register_artifact_type,
    save_artifact,
    verify_artifact,
)


@register_artifact_type("test_bundle")
@dataclasses.dataclass
class Bundle:
    name: str
    factors: np.ndarray
    matrix: sp.csr_matrix
    loss: list


def test_dataclass_and_sparse_round_trip(tmp_path):
    matrix = sp.random(20, 30, density=0.1, format="csr", dtype=np.float32, random_state=0)
    bundle = Bundle("als", np.arange(12, dtype=np.float32).reshape(3, 4), matrix, [3.0, 2.5])
    save_artifact(bundle, tmp_path / "b.npz")
    loaded = load_artifact(tmp_path / "b.npz")
    assert isinstance(loaded, Bundle)
    assert loaded.name == "als" and loaded.loss == [3.0, 2.5]
    np.testing.assert_array_equal(loaded.factors, bundle.factors)
    assert (loaded.matrix != matrix).nnz == 0 and loaded.matrix.shape == (20, 30)
    save_artifact(matrix, tmp_path / "m.npz")
    plain = load_artifact(tmp_path / "m.npz")
    assert (plain != matrix).nnz == 0


def test_failed_write_keeps_previous_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "x.npz"
    save_artifact(sp.eye(3, format="csr"), target)
    before = target.read_bytes()
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-write")
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["x.npz"]


def test_missing_and_unsupported_artifacts(tmp_path):
    with pytest.raises(ArtifactError, match="does not exist: the next `recsys refresh` rebuilds it"):
        load_artifact(tmp_path / "nope.npz")
    with pytest.raises(ArtifactError, match="cannot store"):
        save_artifact(object(), tmp_path / "o.npz")


def test_publish_swaps_whole_generations_and_keeps_the_previous_one(tmp_path):
    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.execute("CREATE TABLE t AS SELECT range AS x FROM range(5)")
    warehouse.execute("CREATE TABLE u AS SELECT 'a' AS y")
    catalog = Catalog(tmp_path / "home")
    first = catalog.publish(warehouse, ["t", "u"])
    reader = catalog.connect()
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    warehouse.execute("CREATE OR REPLACE TABLE t AS SELECT range AS x FROM range(7)")
    second = catalog.publish(warehouse, ["t"])  # while a reader holds the old catalog open
    # The open reader still sees its own generation, whole; a new reader sees the new one (after the
    # old one closes: DuckDB shares one database instance per path within a process).
    assert reader.execute("SELECT count(*) FROM t").fetchone()[0] == 5
    with pytest.raises(duckdb.Error):
        reader.execute("CREATE TABLE y (a INT)")
    reader.close()
    with catalog.connect() as fresh:
        assert fresh.execute("SELECT count(*) FROM t").fetchone()[0] == 7
        assert fresh.execute("SELECT y FROM u").fetchall() == [("a",)]  # carried over, not re-exported
    assert os.path.samefile(first / "u.parquet", second / "u.parquet")
    third = catalog.publish(warehouse, ["t"])
    assert not first.exists() and second.exists() and third.exists()
    assert catalog.tables() == ["t", "u"] and catalog.current_generation() == third
    catalog.publish(warehouse, ["t"], carry_over=False)
    assert catalog.tables() == ["t"]


def test_damaged_artifacts_raise_an_artifact_error_naming_the_file(tmp_path):
    """Truncated, overwritten in place or of an older format: an ArtifactError that names the file and
    says it will be rebuilt, never zipfile.BadZipFile or wrong data."""
    bundle = Bundle("als", np.arange(4096, dtype=np.float32).reshape(64, 64), sp.eye(3, format="csr"), [1.0])
    path = tmp_path / "b.npz"
    save_artifact(bundle, path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(ArtifactError, match=r"b\.npz is corrupt \(BadZipFile.*rebuilds it"):
        load_artifact(path)
    garbled = bytearray(good)
    start = good.index(np.arange(4096, dtype=np.float32).tobytes()[:64])  # inside the factors array
    garbled[start + 100 : start + 108] = b"\x00" * 8
    path.write_bytes(bytes(garbled))
    with pytest.raises(ArtifactError, match=r"b\.npz is corrupt \(BadZipFile: Bad CRC-32"):
        load_artifact(path)
    with pytest.raises(ArtifactError, match=r"b\.npz is corrupt"):
        verify_artifact(path)
    np.savez(path, x=np.zeros(3))  # no header: not written by save_artifact
    with pytest.raises(ArtifactError, match="corrupt"):
        load_artifact(path)


def test_artifacts_name_their_type_so_a_moved_class_still_loads(tmp_path):
    save_artifact(Bundle("als", np.zeros(2, np.float32), sp.eye(2, format="csr"), []), tmp_path / "b.npz")

    @dataclasses.dataclass
    class Moved:  # the same fields, defined elsewhere
        name: str
        factors: np.ndarray
        matrix: sp.csr_matrix
        loss: list

    register_artifact_type("test_bundle", Moved)
    try:
        assert isinstance(load_artifact(tmp_path / "b.npz"), Moved)
    finally:
        register_artifact_type("test_bundle", Bundle)


def test_file_hash_cache_rehashes_only_changed_files(tmp_path):
    path, calls = tmp_path / "f.bin", []
    path.write_bytes(b"a" * 100)
    os.utime(path, (1_000_000_000, 1_000_000_000))  # not "racy": well before now

    def compute(p):
        calls.append(p)
        return file_hash(p)

    cache = FileHashCache(tmp_path / "cache.json")
    first = cache.get(path, "file", compute)
    cache.save()
    assert FileHashCache(tmp_path / "cache.json").get(path, "file", compute) == first and len(calls) == 1
    path.write_bytes(b"b" * 100)  # same size; mtime set back: only the ctime tells
    os.utime(path, (1_000_000_000, 1_000_000_000))
    assert FileHashCache(tmp_path / "cache.json").get(path, "file", compute) != first and len(calls) == 2
