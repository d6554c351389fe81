import dataclasses
import os

import numpy as np
import pytest
import scipy.sparse as sp

from recsys_assets.storage import (
    ArtifactError,
    FileHashCache,
    atomic_path,
    file_hash,
    load_artifact,
    register_artifact_type,
    remove_orphan_temp_files,
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


@register_artifact_type("test_weights")
@dataclasses.dataclass
class Weights:
    weights: dict
    empty: dict


def test_a_dict_of_named_arrays_round_trips(tmp_path):
    """A network's weights (FactorSet.network): each array a member; an empty dict stays plain data."""
    weights = {"W1": np.ones((3, 2), np.float32), "b1": np.arange(2, dtype=np.float64)}
    save_artifact(Weights(weights, {}), tmp_path / "w.npz")
    loaded = load_artifact(tmp_path / "w.npz")
    assert list(loaded.weights) == ["W1", "b1"] and loaded.empty == {}
    for key, array in weights.items():
        assert loaded.weights[key].dtype == array.dtype
        np.testing.assert_array_equal(loaded.weights[key], array)
    verify_artifact(tmp_path / "w.npz")


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


@pytest.fixture
def umask():
    """Set the process umask for one test (restored afterwards)."""
    saved = os.umask(0o022)
    yield os.umask
    os.umask(saved)


def test_atomic_files_get_0666_less_the_umask(tmp_path, umask):
    """Readers are often another user: an artifact is 0644 under umask 022 (mkstemp's 0600 before), and a
    stricter umask is respected."""
    save_artifact(sp.eye(3, format="csr"), tmp_path / "m.npz")
    with atomic_path(tmp_path / "report.html") as tmp:
        tmp.write_text("<html></html>")
    assert oct(os.stat(tmp_path / "m.npz").st_mode & 0o777) == oct(0o644)
    assert oct(os.stat(tmp_path / "report.html").st_mode & 0o777) == oct(0o644)
    umask(0o077)
    save_artifact(sp.eye(3, format="csr"), tmp_path / "private.npz")
    assert oct(os.stat(tmp_path / "private.npz").st_mode & 0o777) == oct(0o600)


def test_orphan_temp_files_of_killed_writes_are_removed(tmp_path):
    home = tmp_path
    orphans = [
        home / ".recsys.duckdb.3f9a1c2b7d4e.tmp",
        home / "artifacts" / ".als_factors.npz.k2j4h5g6f7d8.tmp",
        home / "artifacts" / ".als_ann_index.ann.0123456789abcdef0123456789abcdef.tmp",  # core/ann.py's shape
        home / "published" / ".current.json.a1b2c3d4e5f6.tmp",
        home / ".recsys.duckdb.3f9a1c2b7d4e.tmp.wal",
    ]
    kept = [
        home / "artifacts" / "als_factors.npz",
        home / "artifacts" / ".hidden.tmp",  # not an atomic write's name
        home / "dagster" / "storage" / ".run.db.abc.tmp",  # Dagster's own folder is left alone
        home / "tmp" / ".spill.abc.tmp",  # DuckDB's spill folder
    ]
    for path in orphans + kept:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")
    assert sorted(remove_orphan_temp_files(home)) == sorted(orphans)
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in kept)
