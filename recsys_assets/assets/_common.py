"""Helpers shared by the asset modules: code versions, data versions and readable metadata."""

from collections.abc import Sequence
from typing import Any

import dagster as dg

from recsys_assets.settings import fingerprint
from recsys_assets.storage import content_hash


def code_version(code: str, *settings_parts: Any) -> str:
    """``<code>+<fingerprint>``: bump ``code`` when an asset's logic changes; the fingerprint covers
    exactly the settings the asset reads, so editing one of them marks the asset unsynced."""
    return f"{code}+{fingerprint(*settings_parts)}"


def data_version(*values: Any) -> dg.DataVersion:
    """A content-hash data version: unchanged output stops the staleness cascade."""
    return dg.DataVersion(content_hash(*values))


def markdown_table(rows: Sequence[dict[str, Any]], floats: str = "{:.4g}") -> dg.MetadataValue:
    """A markdown table for the UI, columns in the order of the first row."""
    if not rows:
        return dg.MetadataValue.md("_(empty)_")
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [floats.format(v) if isinstance(v, float) else str(v) for v in (row[c] for c in columns)]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def table_version(conn: Any, table: str, where: str = "") -> dg.DataVersion:
    """Data version of a warehouse table from an order-independent hash of its rows."""
    count, total = conn.execute(
        f"SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0) FROM {table} AS t {where}"
    ).fetchone()
    return dg.DataVersion(content_hash([table, int(count), str(total)]))
