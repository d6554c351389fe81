"""The refresh's guard (runs in progress, dead runs) and its one failure-message builder, on tiny jobs."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import dagster as dg
import pytest

from recsys_assets.refresh.guard import (
    HOST_TAG,
    PID_TAG,
    RefreshInProgressError,
    fail_dead_runs,
    refuse_if_running,
    runs_in_progress,
    runs_recorded_in_progress,
)
from recsys_assets.refresh.waves import failure_message


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@dg.op
def _noop() -> None:
    pass


@dg.job
def _job() -> None:
    _noop()


def _started_run(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun:
    tags = {PID_TAG: str(pid), HOST_TAG: socket.gethostname()}
    return instance.create_run_for_job(job_def=_job, status=dg.DagsterRunStatus.STARTED, tags=tags)


def test_runs_in_progress_is_read_only_and_fail_dead_runs_marks_only_dead_ones():
    with dg.instance_for_test() as instance:
        dead = _started_run(instance, _dead_pid())
        alive = _started_run(instance, os.getpid())
        assert [r.run_id for r in runs_in_progress(instance)] == [alive.run_id]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.STARTED
        running, dead_runs = runs_recorded_in_progress(instance)
        assert ([r.run_id for r in running], [r.run_id for r in dead_runs]) == ([alive.run_id], [dead.run_id])
        with pytest.raises(RefreshInProgressError, match=alive.run_id[:8]):
            refuse_if_running(instance)
        refuse_if_running(instance, exclude_run_ids={alive.run_id})  # its own run does not block it

        assert [r.run_id for r in fail_dead_runs(instance)] == [dead.run_id]
        assert instance.get_run_by_id(dead.run_id).status == dg.DagsterRunStatus.FAILURE
        assert instance.get_run_by_id(alive.run_id).status == dg.DagsterRunStatus.STARTED


class BadInput(ValueError):
    pass


def _defs(fail: bool, check_passes: bool) -> dg.Definitions:
    @dg.asset
    def table() -> int:
        if fail:
            raise BadInput("row 7: negative plays")
        return 1

    @dg.asset_check(asset=table)
    def table_ok() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=check_passes)

    return dg.Definitions(assets=[table], asset_checks=[table_ok])


def _run(fail: bool, check_passes: bool) -> dg.ExecuteInProcessResult:
    job = _defs(fail, check_passes).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        return job.execute_in_process(instance=instance, raise_on_error=False)


def test_failure_message_covers_success_failed_checks_and_failed_steps():
    assert failure_message(_run(fail=False, check_passes=True)) is None
    checks = _run(fail=False, check_passes=False)
    assert failure_message(checks) == (
        f"check(s) failed: table:table_ok (run {checks.run_id}); what depends on them did not run and the "
        "published tables are unchanged"
    )
    step = _run(fail=True, check_passes=True)
    assert failure_message(step) == f"table failed: BadInput: row 7: negative plays (run {step.run_id[:8]})"
