"""Artifact files and published tables (no Dagster import).

Artifacts (sparse matrices, factor arrays, splits) are ``.npz`` files written atomically: into a
temporary file in the same folder, flushed, then ``os.replace``-d over the old one, so a reader or a
crashed run never sees half a file.

Tables live in the pipeline's DuckDB *warehouse* (one writer process). People and the ``recsys``
CLI read a separate *catalog* database, ``$RECSYS_HOME/recsys.duckdb``, made only of views over
Parquet snapshots in ``$RECSYS_HOME/published/``. Publishing a table writes a new snapshot and
renames it into place, so readers are never blocked by a running materialization (DuckDB allows one
writer per database file) and never see half a table: a query sees the old snapshot or the new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

CATALOG_FILE = "recsys.duckdb"
WAREHOUSE_FILE = "warehouse.duckdb"
PUBLISHED_DIR = "published"
ARTIFACT_DIR = "artifacts"


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or of an unexpected kind."""


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _encode(name: str, value: Any, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    if sp.issparse(value):
        csr = sp.csr_matrix(value)
        arrays[f"{name}.data"] = csr.data
        arrays[f"{name}.indices"] = csr.indices
        arrays[f"{name}.indptr"] = csr.indptr
        meta[name] = {"kind": "csr", "shape": list(csr.shape)}
    elif isinstance(value, np.ndarray):
        arrays[name] = value
        meta[name] = {"kind": "array"}
    else:
        json.dumps(value)  # fails early, naming nothing half-written, if a field is not plain data
        meta[name] = {"kind": "json", "value": value}


def _decode(name: str, info: dict[str, Any], arrays: Any) -> Any:
    if info["kind"] == "csr":
        return sp.csr_matrix(
            (arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]),
            shape=tuple(info["shape"]),
        )
    if info["kind"] == "array":
        return arrays[name]
    return info["value"]


def save_artifact(value: Any, path: str | Path) -> Path:
    """Write a sparse matrix or a dataclass of arrays / sparse matrices / plain values atomically.

    The file is an ``.npz`` holding the arrays plus a JSON header naming the type, so
    :func:`load_artifact` rebuilds the same object.
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    if sp.issparse(value):
        _encode("matrix", value, arrays, meta)
        header = {"type": "scipy.sparse.csr_matrix", "fields": meta}
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            _encode(f.name, getattr(value, f.name), arrays, meta)
        cls = type(value)
        header = {"type": f"{cls.__module__}:{cls.__qualname__}", "fields": meta}
    else:
        raise ArtifactError(f"cannot store {type(value).__name__} as an artifact")
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return Path(path)


def load_artifact(path: str | Path) -> Any:
    """Read an artifact written by :func:`save_artifact`."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactError(f"artifact {path} does not exist: materialize the asset that writes it")
    with np.load(path, allow_pickle=False) as arrays:
        header = json.loads(arrays["__header__"].tobytes().decode())
        fields = {name: _decode(name, info, arrays) for name, info in header["fields"].items()}
    if header["type"] == "scipy.sparse.csr_matrix":
        return fields["matrix"]
    module, _, qualname = header["type"].partition(":")
    cls: Any = importlib.import_module(module)
    for part in qualname.split("."):
        cls = getattr(cls, part)
    return cls(**fields)


class Catalog:
    """The published side of ``$RECSYS_HOME``: Parquet snapshots and the read-only view catalog."""

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.published = self.home / PUBLISHED_DIR
        self.path = self.home / CATALOG_FILE

    def snapshot_path(self, table: str) -> Path:
        return self.published / f"{table}.parquet"

    def tables(self) -> list[str]:
        """Names of the published tables, sorted."""
        if not self.published.is_dir():
            return []
        return sorted(p.stem for p in self.published.glob("*.parquet"))

    def publish(self, conn: duckdb.DuckDBPyConnection, tables: Iterable[str]) -> None:
        """Snapshot warehouse ``tables`` (read through ``conn``) to Parquet and refresh the catalog."""
        for table in tables:
            target = self.snapshot_path(table)
            with atomic_path(target) as tmp:
                conn.execute(f"COPY (SELECT * FROM {table}) TO '{tmp}' (FORMAT parquet)")
        self.write_catalog()

    def write_catalog(self) -> None:
        """(Re)write the catalog database: one view per published snapshot, replaced atomically."""
        self.home.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.path) as tmp:
            tmp.unlink()  # DuckDB refuses to open an empty file that is not a database
            conn = duckdb.connect(str(tmp))
            try:
                for table in self.tables():
                    snapshot = str(self.snapshot_path(table)).replace("'", "''")
                    conn.execute(f"CREATE VIEW {table} AS SELECT * FROM read_parquet('{snapshot}')")
            finally:
                conn.close()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A read-only connection to the catalog (never blocks, never blocks the pipeline)."""
        if not self.path.is_file():
            raise ArtifactError(
                f"no published outputs under {self.home}: run `recsys refresh` (or materialize in the UI) first"
            )
        return duckdb.connect(str(self.path), read_only=True)


def content_hash(*values: Any) -> str:
    """A short blake2b hash of arrays, sparse matrices and plain values, for Dagster data versions.

    Equal content gives an equal hash, so an asset whose output did not change stops the
    staleness cascade.
    """

    digest = hashlib.blake2b(digest_size=16)
    for value in values:
        if sp.issparse(value):
            csr = sp.csr_matrix(value)
            csr.sort_indices()
            parts: list[Any] = [np.asarray(csr.shape), csr.indptr, csr.indices, csr.data]
        elif isinstance(value, np.ndarray):
            parts = [np.asarray(value.shape), value]
        else:
            parts = [json.dumps(value, sort_keys=True, default=str).encode()]
        for part in parts:
            if isinstance(part, np.ndarray):
                digest.update(str(part.dtype).encode())
                digest.update(memoryview(np.ascontiguousarray(part)).cast("B"))
            else:
                digest.update(part)
    return digest.hexdigest()
