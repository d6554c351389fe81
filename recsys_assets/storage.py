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
import shutil
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
    """The published side of ``$RECSYS_HOME``: generations of Parquet snapshots, and the read-only
    catalog database whose views point at the current generation.

    A publish writes a whole new generation (``published/<n>/``: the tables given, exported from the
    warehouse, plus hard links to the current generation's other tables), then swaps the catalog file and
    ``published/current.json`` by rename. Readers see either the old generation or the new one, every
    table from the same generation, never a mix and never half a file. The previous generation is kept
    for queries already running; older ones are removed.
    """

    def __init__(self, home: str | Path):
        self.home = Path(home)
        self.published = self.home / PUBLISHED_DIR
        self.path = self.home / CATALOG_FILE
        self._pointer = self.published / "current.json"

    def current_generation(self) -> Path | None:
        """Folder of the generation the catalog points at, or None before the first publish."""
        if not self._pointer.is_file():
            return None
        return self.published / json.loads(self._pointer.read_text())["generation"]

    def snapshot_path(self, table: str) -> Path | None:
        """The current snapshot of ``table``, or None if it was never published."""
        generation = self.current_generation()
        path = generation / f"{table}.parquet" if generation else None
        return path if path is not None and path.is_file() else None

    def tables(self) -> list[str]:
        """Names of the published tables, sorted."""
        generation = self.current_generation()
        return sorted(p.stem for p in generation.glob("*.parquet")) if generation else []

    def publish(
        self, conn: duckdb.DuckDBPyConnection, tables: Iterable[str], carry_over: bool = True
    ) -> Path:
        """Publish warehouse ``tables`` (read through ``conn``) as a new generation; return its folder.

        With ``carry_over`` the current generation's other tables stay published (hard-linked);
        without it the new generation holds exactly ``tables``.
        """
        current = self.current_generation()
        numbers = [int(p.name) for p in self.published.glob("[0-9]*") if p.name.isdigit()]
        generation = self.published / f"{max(numbers, default=0) + 1:08d}"
        generation.mkdir(parents=True)
        tables = list(tables)
        for table in tables:
            target = str(generation / f"{table}.parquet").replace("'", "''")
            conn.execute(f"COPY (SELECT * FROM {table}) TO '{target}' (FORMAT parquet)")
        if current is not None and carry_over:
            for old in current.glob("*.parquet"):
                if old.stem not in tables:
                    os.link(old, generation / old.name)  # unchanged table: same file, no copy
        self._write_catalog(generation)
        with atomic_path(self._pointer) as tmp:
            tmp.write_text(json.dumps({"generation": generation.name}))
        keep = {generation.name} | ({current.name} if current is not None else set())
        for old in self.published.glob("[0-9]*"):
            if old.is_dir() and old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)
        return generation

    def _write_catalog(self, generation: Path) -> None:
        """Write the catalog database (one view per snapshot of ``generation``) and swap it in atomically."""
        with atomic_path(self.path) as tmp:
            tmp.unlink()  # DuckDB refuses to open an empty file that is not a database
            conn = duckdb.connect(str(tmp))
            try:
                for snapshot in sorted(generation.glob("*.parquet")):
                    quoted = str(snapshot).replace("'", "''")
                    conn.execute(f"CREATE VIEW {snapshot.stem} AS SELECT * FROM read_parquet('{quoted}')")
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
