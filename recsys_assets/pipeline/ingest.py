"""Loading the configured source into the warehouse, and the source's content fingerprint."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from recsys_assets.core import loaders
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.settings import DataSettings, SyntheticSettings, fingerprint
from recsys_assets.sql import SQL_DIR
from recsys_assets.storage import content_hash

RAW_TABLES = ("users", "artists", "plays", "rejects", "load_log")
HETREC_TABLES = ("tags", "artist_tags")


def loader_sql_hash() -> str:
    """Hash of the SQL files the loaders run (everything in ``sql/`` but the example queries)."""
    return content_hash(*[(p.name, p.read_text()) for p in sorted(SQL_DIR.glob("*.sql"))])


def source_fingerprint(data: DataSettings, synthetic: SyntheticSettings, home: Path) -> str:
    """Content fingerprint of the configured input: the file's (or folder's) content hash, or for the
    synthetic source the generator settings. A stat cache under ``home`` makes an unchanged file cost
    a ``stat``, and a ``touch`` a re-hash that yields the same fingerprint."""
    if data.source == "synthetic":
        return "synthetic-" + fingerprint(synthetic)
    path = Path(data.path)
    if not path.exists():
        raise loaders.LoadError(
            f"{path}: the {data.source} input does not exist; fix [data] path in the settings file"
        )
    found = loaders.file_fingerprint(path, cache=home / "fingerprints.json", source=data.source)
    if data.source == "triples" and data.items_path:  # the item names are input too
        names = loaders.file_fingerprint(data.items_path, cache=home / "fingerprints.json", source="items")
        found = content_hash(found, names)
    return found


def load_configured_source(
    conn: Any,
    data: DataSettings,
    synthetic: SyntheticSettings | None,
    threads: int,
    progress: Callable[..., None] | None = None,
) -> loaders.LoadReport:
    """Load the source named in ``[data]`` into the warehouse tables (replacing them atomically);
    ``synthetic``: the generator settings when the source is synthetic. Text files are scanned in
    ``threads`` parallel blocks; ``progress`` (a :class:`recsys_assets.progress.Progress`) follows
    the scan."""
    limit, min_value = data.max_reject_fraction, data.min_value
    if data.source == "synthetic":
        if synthetic is None:
            raise ValueError("the synthetic source needs the [synthetic] settings")
        return loaders.load_synthetic(
            conn, generate_plays(**dataclasses.asdict(synthetic)), min_value=min_value
        )
    scan = {"max_reject_fraction": limit, "threads": threads, "min_value": min_value, "progress": progress}
    if data.source == "lastfm360k":
        return loaders.load_lastfm360k(conn, data.path, **scan)
    if data.source == "hetrec":
        return loaders.load_hetrec(conn, data.path, **scan)
    return loaders.load_triples(
        conn,
        data.path,
        user_column=data.user_column,
        item_column=data.item_column,
        value_column=data.value_column,
        header=data.header,
        delimiter=data.delimiter,
        item_name_column=data.item_name_column,
        items_path=data.items_path or None,
        **scan,
    )
