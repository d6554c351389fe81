"""The one place that touches Dagster's private modules (``dagster._…``).

Dagster has no public API yet for what a wave refresh needs: the stale/missing status the UI's
"Materialize unsynced" computes, the data version recorded on an event, the status of an asset check's
latest execution, and the user's exception inside a recorded step failure. Each is wrapped here in a
small function whose inputs and outputs are public Dagster types or plain Python, and
``tests/test_dagster_internals.py`` exercises every one against a real temporary instance, so a Dagster
upgrade that moves or changes them fails that file and its tests, not the product.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleStatus,
    extract_data_version_from_entry,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus
from dagster._utils.error import SerializableErrorInfo

__all__ = [
    "AssetCheckExecutionRecordStatus",
    "StaleCause",
    "StalenessResolver",
    "data_version_of",
    "error_summary",
    "latest_check_failed",
]

Status = Literal["missing", "stale", "fresh"]
_STATUS: dict[StaleStatus, Status] = {
    StaleStatus.MISSING: "missing",
    StaleStatus.STALE: "stale",
    StaleStatus.FRESH: "fresh",
}


@dataclass(frozen=True)
class StaleCause:
    """One root cause of an asset's staleness: the asset it comes from and Dagster's reason."""

    asset: str
    reason: str


class StalenessResolver:
    """Dagster's own stale/missing resolver (the one behind the UI's "unsynced" badge), evaluated now.

    One resolver caches what it reads: make a new one after the instance records new events.
    """

    def __init__(self, defs: dg.Definitions, instance: dg.DagsterInstance) -> None:
        asset_graph = defs.resolve_asset_graph()
        view = AssetGraphView(
            temporal_context=TemporalContext(effective_dt=datetime.now(UTC), last_event_id=None),
            instance=instance,
            asset_graph=asset_graph,
        )
        self._resolver = CachingStaleStatusResolver(
            instance=instance, asset_graph=asset_graph, loading_context=view
        )

    def status(self, key: dg.AssetKey) -> Status:
        """``"missing"`` (never materialized), ``"stale"`` (unsynced) or ``"fresh"``."""
        return _STATUS[self._resolver.get_status(key)]

    def root_causes(self, key: dg.AssetKey) -> list[StaleCause]:
        """Why ``key`` is stale, traced to the assets where the change happened (sorted, no repeats)."""
        causes = {
            StaleCause(c.asset_key.to_user_string(), c.reason)
            for c in self._resolver.get_stale_root_causes(key)
        }
        return sorted(causes, key=lambda c: (c.asset, c.reason))


def data_version_of(entry: dg.EventLogEntry) -> str | None:
    """The data version recorded on a materialization or observation event, if it has one."""
    version = extract_data_version_from_entry(entry)
    return version.value if version is not None else None


def latest_check_failed(instance: dg.DagsterInstance, key: dg.AssetCheckKey) -> bool:
    """Whether the latest recorded execution of an asset check failed (never executed: ``False``)."""
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1)
    return bool(history) and history[0].status == AssetCheckExecutionRecordStatus.FAILED


def error_summary(error: SerializableErrorInfo) -> str:
    """One line for a Dagster-recorded error: the user's exception that Dagster's wrappers
    (``DagsterExecutionStepExecutionError`` and kin) were raised from, as ``"ClassName: message"``,
    its lines joined. The traceback stays in the run's event log."""
    while error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    name = error.cls_name or "Error"
    text = error.message.strip()
    # The message is Python's "module.Class: text"; keep the text after the qualified class name.
    head, sep, rest = text.partition(": ")
    if sep and head.split(".")[-1] == name:
        text = rest
    elif text.split(".")[-1] == name:
        text = ""
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return f"{name}: {text}" if text else name
