"""Dagster internals the UI work needs (to be folded into recsys_assets/dagster_internals.py)."""

from __future__ import annotations

from typing import Any

import dagster as dg
from dagster._core.definitions.data_version import CachingStaleStatusResolver, StaleStatus

_last: list[Any] = [None, None]  # the evaluation's asset graph view and its resolver


def is_unsynced(asset_graph_view: Any, asset_graph: Any, key: dg.AssetKey) -> bool:
    """Whether ``key`` is stale ("unsynced") in an automation evaluation: Dagster's own resolver on the
    evaluation's ``asset_graph_view`` (one resolver per evaluation: it caches what it reads)."""
    if _last[0] is not asset_graph_view:
        _last[:] = [
            asset_graph_view,
            CachingStaleStatusResolver(
                instance=asset_graph_view.instance, asset_graph=asset_graph, loading_context=asset_graph_view
            ),
        ]
    return _last[1].get_status(key) == StaleStatus.STALE
