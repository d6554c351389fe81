"""The guard that keeps two refreshes apart: a file lock, and the runs the instance records in progress.

A run recorded as in progress whose ``recsys refresh`` process has died (killed mid-run) would block
every later refresh; :func:`fail_dead_runs` marks such runs failed, and is the only function here that
writes to the instance.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import dagster as dg

PID_TAG = "recsys/pid"
HOST_TAG = "recsys/host"
IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


class RefreshInProgressError(RuntimeError):
    """Another run of this graph is in progress; starting a second one would overlap it."""


def process_tags() -> dict[str, str]:
    """Tags that let a later refresh tell whether this process is still alive."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}


def process_alive(run: dg.DagsterRun) -> bool:
    """False only for a run started by ``recsys refresh`` on this host whose process no longer exists."""
    pid, host = run.tags.get(PID_TAG), run.tags.get(HOST_TAG)
    if pid is None or host != socket.gethostname():
        return True  # not ours to judge: trust the recorded status
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def runs_recorded_in_progress(
    instance: dg.DagsterInstance, exclude_run_ids: set[str] = frozenset()
) -> tuple[list[dg.DagsterRun], list[dg.DagsterRun]]:
    """Runs the instance records as queued or running, split into (alive, dead): dead ones were started
    by a ``recsys refresh`` on this host whose process no longer exists (killed mid-run). Read-only."""
    alive, dead = [], []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        if run.run_id not in exclude_run_ids:
            (alive if process_alive(run) else dead).append(run)
    return alive, dead


def runs_in_progress(
    instance: dg.DagsterInstance, exclude_run_ids: set[str] = frozenset()
) -> list[dg.DagsterRun]:
    """Runs of this instance that are queued or running and whose process is alive. Read-only: a dead
    run is left for :func:`fail_dead_runs`."""
    return runs_recorded_in_progress(instance, exclude_run_ids)[0]


def fail_dead_runs(
    instance: dg.DagsterInstance, exclude_run_ids: set[str] = frozenset()
) -> list[dg.DagsterRun]:
    """Mark failed every run recorded in progress whose ``recsys refresh`` process has died, so it no
    longer blocks later refreshes; returns those runs."""
    dead = runs_recorded_in_progress(instance, exclude_run_ids)[1]
    for run in dead:
        instance.report_run_failed(run)
    return dead


def refuse_if_running(instance: dg.DagsterInstance, exclude_run_ids: set[str] = frozenset()) -> None:
    """Raise :class:`RefreshInProgressError` naming the runs in progress, if any is alive."""
    active = runs_in_progress(instance, exclude_run_ids)
    if active:
        names = ", ".join(f"{r.run_id[:8]} ({r.job_name}, {r.status.value})" for r in active)
        raise RefreshInProgressError(f"not starting: run(s) in progress: {names}")


@contextlib.contextmanager
def exclusive(lock_path: Path | None) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``lock_path`` (if given), so two refreshes started at the same
    moment cannot both pass the in-progress check; raise :class:`RefreshInProgressError` if held."""
    if lock_path is None:
        yield
        return
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise RefreshInProgressError(f"not starting: another refresh holds {lock_path}") from exc
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
