"""Artifact files (no Dagster import).

Artifacts (sparse matrices, factor arrays, splits) are ``.npz`` files written atomically: into a
temporary file in the same folder, flushed, then ``os.replace``-d over the old one, so a reader or a
crashed run never sees half a file. Every file written this way gets the usual permissions (``0666``
less the umask, so ``0644`` under the common umask ``022``): readers are often another user.

Tables live in the pipeline's DuckDB *warehouse* (one writer process); people and the ``recsys`` CLI
read the published catalog instead (:mod:`recsys_assets.catalog`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

WAREHOUSE_FILE = "warehouse.duckdb"
ARTIFACT_DIR = "artifacts"
# Folders under the home that hold no files written by atomic_path: Dagster's own instance storage,
# downloads (resumable ``.part`` files) and DuckDB's spill folder.
_NOT_OURS = frozenset({"dagster", "downloads", "tmp"})


class ArtifactError(ValueError):
    """An artifact file is missing, unreadable or of an unexpected kind."""


def _temp_beside(path: Path) -> Path:
    """Create an empty, new ``.<name>.<random>.tmp`` file beside ``path`` with mode ``0666`` less the
    umask (``tempfile.mkstemp`` would make it ``0600``, and the rename keeps the mode)."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, else delete it.

    The file ends up with mode ``0666`` less the umask, whatever wrote it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_beside(path)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


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
            # ``.<name>.<random>.tmp``: atomic_path's names (core/ann.py writes the same shape), and the
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


def __getattr__(name: str) -> Any:
    # ``Catalog`` lived here before it got its own module; old imports keep working.
    if name == "Catalog":
        from recsys_assets.catalog import Catalog

        return Catalog
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
