"""Artifact files (no Dagster import).

Artifacts (sparse matrices, factor arrays, splits) are ``.npz`` files written atomically: into a
temporary file in the same folder, flushed, then ``os.replace``-d over the old one
(:func:`recsys_assets.core.files.atomic_path`), so a reader or a crashed run never sees half a file. Every file written this way gets the usual permissions (``0666``
less the umask, so ``0644`` under the common umask ``022``): readers are often another user. Each
artifact carries the content hash of its arrays and is checked against it on every load, so a truncated
or altered file is reported (and rebuilt), never used.

Warehouse writers record the data version of what they wrote in a ledger table, in the same transaction
as their tables; ``recsys refresh`` compares ledger and artifacts with what Dagster recorded.

Tables live in the pipeline's DuckDB *warehouse* (one writer process); people and the ``recsys`` CLI
read the published catalog instead (:mod:`recsys_assets.catalog`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.files import FileHashCache, atomic_path, file_hash

WAREHOUSE_FILE = "warehouse.duckdb"
ARTIFACT_DIR = "artifacts"
# Folders under the home that hold no files written by atomic_path: Dagster's own instance storage,
# downloads and DuckDB's spill folder.
_NOT_OURS = frozenset({"dagster", "downloads", "tmp"})


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or of an unexpected kind."""


class ArtifactMissingError(ArtifactError):
    """An artifact file that a recorded materialization wrote is not there."""

    def __init__(self, path: Path):
        self.path = path
        super().__init__(f"artifact {path} does not exist: the next `recsys refresh` rebuilds it")


class ArtifactCorruptError(ArtifactError):
    """An artifact file exists but cannot be read, or its content does not match its recorded hash."""

    def __init__(self, path: Path, detail: str):
        self.path, self.detail = path, detail
        super().__init__(f"artifact {path} is corrupt ({detail}): the next `recsys refresh` rebuilds it")


# Artifact headers name a type by a short registered name, never by module path: moving a class to
# another module must not make every saved artifact unreadable.
_ARTIFACT_TYPES: dict[str, type] = {}
_CSR_TYPE = "csr_matrix"
ARTIFACT_FORMAT = 2


def register_artifact_type(name: str, cls: type | None = None) -> Any:
    """Let dataclass ``cls`` be stored as an artifact under the type name ``name`` (usable as a class
    decorator: ``@register_artifact_type("factor_set")``). Registering a name again replaces it."""

    def register(target: type) -> type:
        if not dataclasses.is_dataclass(target) or name == _CSR_TYPE:
            raise TypeError(f"cannot register {target!r} as artifact type {name!r}: it must be a dataclass")
        _ARTIFACT_TYPES[name] = target
        return target

    return register(cls) if cls is not None else register


def _type_name(cls: type) -> str | None:
    return next((name for name, known in _ARTIFACT_TYPES.items() if known is cls), None)


@dataclasses.dataclass(frozen=True)
class StoredArtifact:
    """What :func:`save_artifact` wrote: the file, the content hash in its header, its size in bytes,
    and the external files (path -> content hash) the value refers to."""

    path: Path
    content_hash: str
    nbytes: int
    files: dict[str, str]


def remove_orphan_temp_files(home: str | Path) -> list[Path]:
    """Delete temporary files of atomic writes that a killed run left under ``home``; return them.

    Call only while no other writer runs in ``home`` (a refresh or a publish holds it). Dagster's
    instance folder, downloads and DuckDB's spill folder are not searched.
    """
    removed = []
    for folder, subfolders, files in os.walk(home):
        if Path(folder) == Path(home):
            subfolders[:] = [d for d in subfolders if d not in _NOT_OURS]
        for name in files:
            # ``.<name>.<random>.tmp``: atomic_path's names (every atomic write in the project), and the
            # write-ahead log DuckDB keeps beside such a file while the catalog is being written.
            stem = name.removesuffix(".wal")
            if stem.startswith(".") and stem.endswith(".tmp") and stem.count(".") >= 3:
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed


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


def _decode(name: str, info: dict[str, Any], arrays: Mapping[str, np.ndarray]) -> Any:
    if info["kind"] == "csr":
        return sp.csr_matrix(
            (arrays[f"{name}.data"], arrays[f"{name}.indices"], arrays[f"{name}.indptr"]),
            shape=tuple(info["shape"]),
        )
    if info["kind"] == "array":
        return arrays[name]
    return info["value"]


def _arrays_hash(named: Iterable[tuple[str, np.ndarray]]) -> str:
    """blake2b-128 of (name, dtype, shape, bytes) of each array, in the order given (sorted by name)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, array in named:
        digest.update(f"{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        digest.update(memoryview(np.ascontiguousarray(array)).cast("B"))
    return digest.hexdigest()


def save_artifact(value: Any, path: str | Path) -> StoredArtifact:
    """Write a sparse matrix or a registered dataclass of arrays / sparse matrices / plain values
    atomically, as an uncompressed ``.npz``.

    The file holds the arrays plus a JSON header: format, registered type name, fields, the content
    hash of the arrays (checked by every load) and, when the value has a ``stored_files()`` method,
    the external files it refers to with their content hashes (e.g. an ANN index file).
    """
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {}
    files: dict[str, str] = {}
    if sp.issparse(value):
        _encode("matrix", value, arrays, meta)
        type_name = _CSR_TYPE
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        type_name = _type_name(type(value))
        if type_name is None:
            raise ArtifactError(
                f"cannot store {type(value).__name__} as an artifact: register it with register_artifact_type"
            )
        for f in dataclasses.fields(value):
            _encode(f.name, getattr(value, f.name), arrays, meta)
        files = dict(value.stored_files()) if hasattr(value, "stored_files") else {}
    else:
        raise ArtifactError(f"cannot store {type(value).__name__} as an artifact")
    digest = _arrays_hash(sorted(arrays.items()))
    header = {
        "format": ARTIFACT_FORMAT,
        "type": type_name,
        "fields": meta,
        "content_hash": digest,
        "files": files,
    }
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
    return StoredArtifact(Path(path), digest, Path(path).stat().st_size, files)


def _open_artifact(path: Path) -> tuple[Any, dict[str, Any]]:
    """The open ``.npz`` and its header; missing, unreadable or old-format files raise."""
    if not path.is_file():
        raise ArtifactMissingError(path)
    try:
        npz = np.load(path, allow_pickle=False)
    except Exception as exc:  # a truncated or garbled zip raises any of several types
        raise ArtifactCorruptError(path, f"{type(exc).__name__}: {exc}") from exc
    try:
        header = json.loads(npz["__header__"].tobytes().decode())
    except Exception as exc:
        npz.close()
        raise ArtifactCorruptError(path, f"unreadable header: {type(exc).__name__}: {exc}") from exc
    if not isinstance(header, dict) or header.get("format") != ARTIFACT_FORMAT:
        npz.close()
        raise ArtifactCorruptError(path, "written by an older version of recsys")
    return npz, header


def _read_verified(path: Path, keep: bool) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Header and (when ``keep``) arrays of an artifact whose arrays match its header's content hash."""
    npz, header = _open_artifact(path)
    arrays: dict[str, np.ndarray] = {}

    def members() -> Iterator[tuple[str, np.ndarray]]:
        for name in sorted(n for n in npz.files if n != "__header__"):
            array = npz[name]
            if keep:
                arrays[name] = array
            yield name, array

    with npz:
        try:
            digest = _arrays_hash(members())
        except Exception as exc:
            raise ArtifactCorruptError(path, f"{type(exc).__name__}: {exc}") from exc
    if digest != header.get("content_hash"):
        raise ArtifactCorruptError(path, "its arrays do not match the content hash in its header")
    return header, arrays


def load_artifact(path: str | Path) -> Any:
    """Read an artifact written by :func:`save_artifact`, after checking its content hash.

    Raises :class:`ArtifactMissingError` or :class:`ArtifactCorruptError` (naming the file) instead of
    returning wrong data; an external file it refers to is checked by whoever opens that file.
    """
    path = Path(path)
    header, arrays = _read_verified(path, keep=True)
    try:
        fields = {name: _decode(name, info, arrays) for name, info in header["fields"].items()}
    except Exception as exc:
        raise ArtifactCorruptError(path, f"{type(exc).__name__}: {exc}") from exc
    if header["type"] == _CSR_TYPE:
        return fields["matrix"]
    cls = _ARTIFACT_TYPES.get(header["type"])
    if cls is None:
        raise ArtifactCorruptError(path, f"unknown artifact type {header['type']!r}")
    return cls(**fields)


def bytes_hash(data: bytes) -> str:
    """blake2b-128 (hex) of ``data``: the :func:`file_hash` of a file holding exactly these bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def verify_artifact(path: str | Path, cache: FileHashCache | None = None) -> dict[str, Any]:
    """The header of a sound artifact: its arrays are hashed (or their hash is known from ``cache`` for an
    unchanged file) and compared with the header's content hash. Raises like :func:`load_artifact`."""
    path = Path(path)
    npz, header = _open_artifact(path)
    npz.close()
    if cache is None:
        return _read_verified(path, keep=False)[0]
    verified = cache.get(path, "npz", lambda p: _read_verified(p, keep=False)[0]["content_hash"])
    if verified != header.get("content_hash"):
        raise ArtifactCorruptError(path, "its arrays do not match the content hash in its header")
    return header


def verify_file(path: str | Path, expected: str, cache: FileHashCache | None = None) -> None:
    """Raise unless ``path`` exists and its :func:`file_hash` is ``expected`` (the hash recorded when it
    was written). Call before handing a file to a library that trusts it (a C++ index loader aborts the
    process on some garbage)."""
    path = Path(path)
    if not path.is_file():
        raise ArtifactMissingError(path)
    actual = cache.get(path, "file", file_hash) if cache is not None else file_hash(path)
    if actual != expected:
        raise ArtifactCorruptError(path, "its content differs from the hash recorded when it was written")


# The warehouse side: every asset that writes warehouse tables records the data version of what it
# wrote in LEDGER_TABLE, in the same transaction as the tables (or marked in progress first where the
# writer owns its transaction). A write committed by a run killed before Dagster recorded it then
# shows as a mismatch with the recorded data version.
LEDGER_TABLE = "_asset_versions"
WRITE_IN_PROGRESS = None


def record_version(
    conn: duckdb.DuckDBPyConnection, asset: str, version: str | None, files: Mapping[str, str] | None = None
) -> None:
    """Record that ``asset``'s warehouse tables now hold data version ``version`` (None: a write is in
    progress); ``files`` maps artifact names (relative to ``$RECSYS_HOME/artifacts``) the asset wrote with
    it to their :func:`file_hash`. Call inside the transaction that writes the tables."""
    conn.execute(
        f"INSERT OR REPLACE INTO {LEDGER_TABLE} VALUES (?, ?, ?, now())",
        [asset, version, json.dumps(dict(files or {}), sort_keys=True)],
    )


@contextlib.contextmanager
def recording_version(conn: duckdb.DuckDBPyConnection, asset: str) -> Iterator[Callable[[str], None]]:
    """For a writer that commits its own transaction (the loaders): mark ``asset``'s write in progress,
    yield ``done(version)`` to call once the tables are written. A kill in between leaves the mark
    (the asset is then re-run); an exception restores the previous row (the writer rolled back)."""
    previous = conn.execute(
        f"SELECT data_version, files FROM {LEDGER_TABLE} WHERE asset = ?", [asset]
    ).fetchall()
    record_version(conn, asset, WRITE_IN_PROGRESS)
    try:
        yield lambda version: record_version(conn, asset, version)
    except BaseException:
        if previous:
            record_version(conn, asset, previous[0][0], json.loads(previous[0][1]))
        else:
            conn.execute(f"DELETE FROM {LEDGER_TABLE} WHERE asset = ?", [asset])
        raise


@dataclasses.dataclass(frozen=True)
class LedgerEntry:
    """One row of the version ledger: the data version of an asset's warehouse write (None while a write
    is in progress) and the artifact files written with it (name -> file hash)."""

    data_version: str | None
    files: dict[str, str]


class WarehouseUnavailableError(RuntimeError):
    """The warehouse cannot be opened read-only (another process is writing it)."""


def read_ledger(database: Path) -> dict[str, LedgerEntry]:
    """The version ledger of the warehouse at ``database`` (empty when there is none yet), read
    through a read-only connection."""
    if not database.is_file():
        return {}
    try:
        conn = duckdb.connect(str(database), read_only=True)
    except duckdb.Error as exc:
        raise WarehouseUnavailableError(f"cannot read {database}: {exc}") from exc
    try:
        rows = conn.execute(f"SELECT asset, data_version, files FROM {LEDGER_TABLE}").fetchall()
    except duckdb.CatalogException:
        return {}  # a warehouse written before the ledger existed
    finally:
        conn.close()
    return {asset: LedgerEntry(version, json.loads(files or "{}")) for asset, version, files in rows}


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
