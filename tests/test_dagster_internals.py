"""Contract tests for :mod:`recsys_assets.dagster_internals`: every private Dagster call it wraps,
exercised against a real temporary instance. A Dagster upgrade that changes one of them fails here."""

from __future__ import annotations

import dagster as dg
import pytest

from recsys_assets.cron import is_valid_cron_string
from recsys_assets.dagster_internals import (
    StaleCause,
    StalenessResolver,
    data_version_of,
    error_summary,
    latest_check_failed,
)


class InputError(ValueError):
    """A user's exception, to be found inside Dagster's wrappers."""


def _defs(parent_version: str, child_fails: bool = False, check_passes: bool = True) -> dg.Definitions:
    @dg.asset(code_version=parent_version)
    def parent() -> int:
        return 1

    @dg.asset(code_version="1")
    def child(parent: int) -> int:
        if child_fails:
            raise InputError("line 3: bad value\nfix the file")
        return parent + 1

    @dg.asset_check(asset=child)
    def child_positive() -> dg.AssetCheckResult:
        return dg.AssetCheckResult(passed=check_passes)

    return dg.Definitions(assets=[parent, child], asset_checks=[child_positive])


def _materialize(defs: dg.Definitions, instance: dg.DagsterInstance, raise_on_error: bool = True):
    job = defs.resolve_implicit_global_asset_job_def()
    return job.execute_in_process(instance=instance, raise_on_error=raise_on_error)


P, C = dg.AssetKey("parent"), dg.AssetKey("child")


def test_resolver_reports_missing_then_fresh_then_stale_with_root_cause():
    with dg.instance_for_test() as instance:
        defs = _defs("1")
        resolver = StalenessResolver(defs, instance)
        assert (resolver.status(P), resolver.status(C)) == ("missing", "missing")
        _materialize(defs, instance)
        resolver = StalenessResolver(defs, instance)
        assert (resolver.status(P), resolver.status(C)) == ("fresh", "fresh")
        assert resolver.root_causes(C) == []

        changed = _defs("2")  # the parent's code changed; the child turns stale only once it re-runs
        resolver = StalenessResolver(changed, instance)
        assert (resolver.status(P), resolver.status(C)) == ("stale", "fresh")
        assert resolver.root_causes(P) == [StaleCause("parent", "has a new code version")]
        changed.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=[P]
        )
        resolver = StalenessResolver(changed, instance)
        assert (resolver.status(P), resolver.status(C)) == ("fresh", "stale")
        assert [c.asset for c in resolver.root_causes(C)] == ["parent"]


def test_data_version_of_reads_materialization_and_observation_versions():
    @dg.multi_observable_source_asset(specs=[dg.AssetSpec("source")])
    def source():
        yield dg.ObserveResult(asset_key="source", data_version=dg.DataVersion("fingerprint-7"))

    @dg.asset(deps=[source])
    def derived() -> dg.Output[int]:
        return dg.Output(3, data_version=dg.DataVersion("v-3"))

    defs = dg.Definitions(assets=[source, derived])
    with dg.instance_for_test() as instance:
        _materialize(defs, instance)
        entry = instance.get_latest_materialization_events([dg.AssetKey("derived")])[dg.AssetKey("derived")]
        assert data_version_of(entry) == "v-3"
        record = instance.get_latest_data_version_record(dg.AssetKey("source"), is_source=True)
        assert data_version_of(record.event_log_entry) == "fingerprint-7"


def test_latest_check_failed_follows_the_latest_execution():
    key = dg.AssetCheckKey(C, "child_positive")
    with dg.instance_for_test() as instance:
        assert latest_check_failed(instance, key) is False  # never executed
        _materialize(_defs("1", check_passes=False), instance, raise_on_error=False)
        assert latest_check_failed(instance, key) is True
        _materialize(_defs("1", check_passes=True), instance)
        assert latest_check_failed(instance, key) is False


def test_error_summary_unwraps_dagster_errors_to_the_users_exception():
    with dg.instance_for_test() as instance:
        run = _materialize(_defs("1", child_fails=True), instance, raise_on_error=False)
        failures = [e for e in run.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert len(failures) == 1
        assert error_summary(failures[0].event_specific_data.error) == (
            "InputError: line 3: bad value fix the file"
        )


@pytest.mark.parametrize(
    ("cron", "valid"),
    [("0 3 * * *", True), ("*/15 * * * 1-5", True), ("61 * * * *", False), ("daily", False), ("", False)],
)
def test_cron_validation_uses_dagsters_schedule_check(cron, valid):
    assert is_valid_cron_string(cron) is valid
