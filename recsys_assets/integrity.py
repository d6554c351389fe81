"""Do the stored outputs still match what Dagster recorded?

Dagster decides staleness from what it *recorded*; the outputs live in files and the warehouse. A run
killed after writing but before Dagster recorded the materialization, a truncated or overwritten file,
or a deleted one leaves the two apart, and Dagster alone would call the asset up to date. Every stored
output carries the version it was written with, and this module compares:

- an ``.npz`` artifact: the content hash in its header (checked against its arrays) with the one the
  IO manager recorded in the materialization's metadata; files the artifact refers to (an ANN index)
  with the hashes in its header;
- warehouse tables: the ledger row the asset wrote in the same transaction (``_asset_versions``) with
  the recorded data version; artifact files written with it (the HTML report) with the ledger's hashes.

Unchanged files are not re-read: their hashes are cached by (size, mtime_ns, ctime_ns, inode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from recsys_assets.dagster_internals import data_version_of
from recsys_assets.resources import CONTENT_HASH_KEY
from recsys_assets.storage import (
    ARTIFACT_DIR,
    ArtifactCorruptError,
    ArtifactMissingError,
    FileHashCache,
    LedgerEntry,
    WarehouseUnavailableError,
    read_ledger,
    verify_artifact,
    verify_file,
)

HASH_CACHE_FILE = "hash_cache.json"
DIFFERS = "stored output differs from its recorded materialization (killed run?)"
INTERRUPTED = "warehouse write interrupted before it was recorded (killed run?)"
OLDER_FORMAT = "artifact written by an older version of recsys"


@dataclass
class Verification:
    """Assets whose stored output disagrees with their latest materialization (asset -> why), and notes
    on what could not be checked."""

    problems: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _home_relative(home: Path, path: Path) -> str:
    return str(path.relative_to(home)) if path.is_relative_to(home) else str(path)


def _file_problem(path: Path, expected: str, cache: FileHashCache, home: Path) -> str | None:
    try:
        verify_file(path, expected, cache)
    except ArtifactMissingError:
        return f"artifact missing: {_home_relative(home, path)}"
    except ArtifactCorruptError as exc:
        return f"artifact corrupt: {_home_relative(home, path)} ({exc.detail})"
    return None


def _artifact_problem(
    path: Path, recorded_hash: str, cache: FileHashCache, home: Path, artifacts: Path
) -> str | None:
    try:
        header = verify_artifact(path, cache)
    except ArtifactMissingError:
        return f"artifact missing: {_home_relative(home, path)}"
    except ArtifactCorruptError as exc:
        return f"artifact corrupt: {_home_relative(home, path)} ({exc.detail})"
    if header["content_hash"] != recorded_hash:
        return DIFFERS
    for name, expected in sorted(header.get("files", {}).items()):
        problem = _file_problem(artifacts / name, expected, cache, home)  # an absolute name stays as is
        if problem:
            return problem
    return None


def _ledger_problem(
    entry: LedgerEntry, recorded: str | None, cache: FileHashCache, home: Path, artifacts: Path
) -> str | None:
    if entry.data_version is None:
        return INTERRUPTED
    if entry.data_version != recorded:
        return DIFFERS
    for name, expected in sorted(entry.files.items()):
        problem = _file_problem(artifacts / name, expected, cache, home)
        if problem:
            return problem
    return None


def verify_stored_outputs(
    defs: dg.Definitions, instance: dg.DagsterInstance, keys: list[dg.AssetKey], save_cache: bool = True
) -> Verification:
    """Check the stored outputs of ``keys`` against their latest recorded materializations (assets never
    materialized are skipped: Dagster already reports them missing). ``save_cache=False`` leaves the
    hash cache file untouched (``recsys status`` writes nothing)."""
    store, io_manager, warehouse = (defs.resources[n] for n in ("store", "io_manager", "warehouse"))
    home = Path(store.home)
    artifacts = home / ARTIFACT_DIR
    result = Verification()
    events = {k: e for k, e in instance.get_latest_materialization_events(keys).items() if e is not None}
    if not events:
        return result
    try:
        ledger: dict[str, LedgerEntry] = read_ledger(Path(warehouse.database))
    except WarehouseUnavailableError as exc:
        ledger = {}
        result.notes.append(f"warehouse tables not checked: {exc}")
    cache = FileHashCache(home / HASH_CACHE_FILE, writable=save_cache)
    for key, entry in sorted(events.items(), key=lambda item: item[0].to_user_string()):
        materialization = entry.asset_materialization
        if materialization is None:
            continue
        name, metadata = key.to_user_string(), materialization.metadata
        recorded = data_version_of(entry)
        problem = None
        if CONTENT_HASH_KEY in metadata:
            recorded_hash = str(metadata[CONTENT_HASH_KEY].value)
            problem = _artifact_problem(io_manager.path_for(key), recorded_hash, cache, home, artifacts)
        elif "path" in metadata and "bytes" in metadata:  # the IO manager's metadata before content hashes
            problem = OLDER_FORMAT
        if problem is None and name in ledger:
            problem = _ledger_problem(ledger[name], recorded, cache, home, artifacts)
        if problem:
            result.problems[name] = problem
    cache.save()
    return result
