"""Helpers shared by the asset modules: settings-derived code versions, data versions and metadata."""

import functools
from collections.abc import Callable, Sequence
from typing import Any

import dagster as dg

from recsys_assets.engines.settings import EngineSettings
from recsys_assets.pipeline.warehouse import markdown_rows, table_hash
from recsys_assets.settings import RuntimeSettings, UiSettings, fingerprint
from recsys_assets.storage import content_hash


def code_version(code: str, *settings_parts: Any) -> str:
    """``<code>+<fingerprint>``: bump ``code`` when an asset's logic changes; the fingerprint covers
    the settings the asset reads, so editing one of them marks the asset unsynced."""
    return f"{code}+{fingerprint(*settings_parts)}"


_NOT_FINGERPRINTED = (RuntimeSettings, UiSettings)


def reads_settings(code: str) -> Callable:
    """Decorator of an asset builder whose arguments are the settings it reads: the builder gets
    ``code_version=`` computed from exactly those arguments, so a setting it reads is in its
    fingerprint by construction. :class:`RuntimeSettings` (threads, memory) and :class:`UiSettings`
    (the ports of ``recsys ui``) are left out: they never change a result; so is the keyword ``where`` (the settings file, named in error messages). An
    :class:`EngineSettings` counts as its :meth:`~EngineSettings.fingerprint_part`."""

    def decorate(build: Callable) -> Callable:
        @functools.wraps(build)
        def builder(*args: Any, **kwargs: Any) -> Any:
            parts = [_part(a) for a in args if not isinstance(a, _NOT_FINGERPRINTED)]
            parts += [
                (k, _part(v))
                for k, v in sorted(kwargs.items())
                if k != "where" and not isinstance(v, _NOT_FINGERPRINTED)
            ]
            return build(*args, code_version=code_version(code, *parts), **kwargs)

        return builder

    return decorate


def _part(value: Any) -> Any:
    return value.fingerprint_part() if isinstance(value, EngineSettings) else value


def data_version(*values: Any) -> dg.DataVersion:
    """A content-hash data version: unchanged output stops the staleness cascade."""
    return dg.DataVersion(content_hash(*values))


def markdown_table(rows: Sequence[dict[str, Any]], floats: str = "{:.4g}") -> dg.MetadataValue:
    """A markdown table for the UI, columns in the order of the first row."""
    return dg.MetadataValue.md(markdown_rows(rows, floats))


def table_version(conn: Any, table: str, where: str = "") -> dg.DataVersion:
    """Data version of a warehouse table from an order-independent hash of its rows."""
    return dg.DataVersion(table_hash(conn, table, where))
