"""Materialize exactly the stale and missing assets, in waves, in-process.

Dagster's "unsynced" is not transitive: a child turns stale only after its parent re-materializes
with a new data version. So a refresh observes the input, resolves the stale and missing assets
with the same resolver the UI's "Materialize unsynced" uses, runs them, and repeats until nothing
is stale. An asset whose output did not change returns the same data version and stops the cascade.

Dagster only knows what it recorded, so the planner also checks every stored output against its latest
materialization (:mod:`recsys_assets.integrity`): a missing, corrupt or disagreeing output (a run
killed between writing and recording) makes its asset stale too.

- :mod:`~recsys_assets.refresh.planning`: what is stale or missing, and what can run in this wave;
- :mod:`~recsys_assets.refresh.guard`: the lock and the runs in progress (marks dead runs failed);
- :mod:`~recsys_assets.refresh.waves`: the wave loop, ``status`` and the one-line failure messages.
"""

from recsys_assets.refresh.guard import (
    HOST_TAG,
    PID_TAG,
    RefreshInProgressError,
    fail_dead_runs,
    runs_in_progress,
    runs_recorded_in_progress,
)
from recsys_assets.refresh.planning import (
    UnknownAssetError,
    materializable_keys,
    observable_keys,
    plan_waves,
    ready_to_run,
    stale_or_missing,
)
from recsys_assets.refresh.waves import (
    REFRESH_TAG,
    RefreshFailedError,
    RefreshResult,
    StatusReport,
    failure_message,
    observe_sources,
    refresh,
    status,
)

__all__ = [
    "HOST_TAG",
    "PID_TAG",
    "REFRESH_TAG",
    "RefreshFailedError",
    "RefreshInProgressError",
    "RefreshResult",
    "StatusReport",
    "UnknownAssetError",
    "fail_dead_runs",
    "failure_message",
    "materializable_keys",
    "observable_keys",
    "observe_sources",
    "plan_waves",
    "ready_to_run",
    "refresh",
    "runs_in_progress",
    "runs_recorded_in_progress",
    "stale_or_missing",
    "status",
]
