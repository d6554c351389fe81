"""Warehouse writers: whole-table replacement and per-model factor tables, each recording its data
version in the version ledger in the same transaction."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from recsys_assets.core.factorset import FactorSet
from recsys_assets.storage import content_hash, record_version

FACTOR_TABLES = ("artist_factors", "user_factors")


def table_hash(conn: Any, table: str, where: str = "") -> str:
    """Content hash of a warehouse table from an order-independent hash of its rows."""
    count, total = conn.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {table} AS t {where}"
    ).fetchone()
    return content_hash([table, int(count), str(total)])


def replace_table(conn: Any, table: str, frame: pd.DataFrame) -> str:
    """Replace every row of ``table`` (written by the asset of the same name) with ``frame`` and record
    its content hash (:func:`table_hash`, returned) in the version ledger, in one transaction."""
    conn.register("replacement_frame", frame)
    conn.execute("BEGIN TRANSACTION")
    conn.execute(f"DELETE FROM {table}")
    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_frame")
    version = table_hash(conn, table)
    record_version(conn, table, version)
    conn.execute("COMMIT")
    conn.unregister("replacement_frame")
    return version


def write_factor_tables(conn: Any, factors: FactorSet, version: str) -> None:
    """Replace this model's rows of ``artist_factors`` / ``user_factors`` and record ``version`` (the
    asset's data version) in the version ledger, in one transaction."""
    frames = {
        "artist_factors": ("artist_id", factors.item_factors),
        "user_factors": ("user_id", factors.user_factors),
    }
    conn.execute("BEGIN TRANSACTION")
    for table, (id_column, matrix) in frames.items():
        # One column per factor is columnar end to end; DuckDB packs them into FLOAT[] itself.
        frame = pd.DataFrame(matrix, columns=[f"f{j}" for j in range(matrix.shape[1])])
        frame.insert(0, id_column, np.arange(matrix.shape[0], dtype=np.int32))
        vector = ", ".join(frame.columns[1:])
        conn.register("factor_frame", frame)
        conn.execute(f"DELETE FROM {table} WHERE model = ?", [factors.model])
        conn.execute(
            f"INSERT INTO {table} SELECT ?, ?, {id_column}, [{vector}]::FLOAT[] FROM factor_frame",
            [factors.model, factors.settings_fingerprint],
        )
        conn.unregister("factor_frame")
    record_version(conn, f"{factors.model}_factors", version)
    conn.execute("COMMIT")


def markdown_rows(rows: Sequence[dict[str, Any]], floats: str = "{:.4g}") -> str:
    """A markdown table, columns in the order of the first row (``_(empty)_`` without rows)."""
    if not rows:
        return "_(empty)_"
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [floats.format(v) if isinstance(v, float) else str(v) for v in (row[c] for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
