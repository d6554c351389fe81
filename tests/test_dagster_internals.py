"""Contract tests for :mod:`recsys_assets.dagster_internals`: every private Dagster call it wraps,
exercised against a real temporary instance. A Dagster upgrade that changes one of them fails here."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.cron import is_valid_cron_string
from recsys_assets.dagster_internals import (
    StaleCause,
    StalenessResolver,
    data_version_of,
    error_summary,
    execute_in_code_location,
    latest_check_failed,
    workspace_origin,
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


WORKSPACE = Path(__file__).resolve().parents[1] / "workspace.yaml"


def test_workspace_origin_is_the_location_dagster_dev_serves(tmp_path):
    origin = workspace_origin(WORKSPACE)
    assert origin is not None and origin.location_name == "recsys"
    assert workspace_origin(tmp_path / "workspace.yaml") is None


@pytest.mark.parametrize("with_origin", [True, False])
def test_execute_in_code_location_records_the_location(with_origin):
    origin = workspace_origin(WORKSPACE) if with_origin else None
    job = _defs("1").resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = execute_in_code_location(
            job,
            instance,
            origin,
            asset_selection=[dg.AssetKey("parent")],
            tags={"who": "test"},
            run_config={},
        )
        assert result.success
        run = instance.get_run_by_id(result.run_id)
        assert run.tags["who"] == "test" and run.asset_selection == {dg.AssetKey("parent")}
        materialized = [
            e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        ]
        assert [e.asset_key for e in materialized] == [dg.AssetKey("parent")]
        assert instance.get_latest_materialization_event(dg.AssetKey("child")) is None
        if with_origin:
            repository = run.remote_job_origin.repository_origin
            assert repository.code_location_origin.location_name == "recsys"
            assert repository.repository_name == "__repository__" and run.job_name == job.name
        else:
            assert run.remote_job_origin is None


def test_execute_in_code_location_reports_a_failed_step_without_raising():
    job = _defs("1", child_fails=True).resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        result = execute_in_code_location(
            job,
            instance,
            workspace_origin(WORKSPACE),
            asset_selection=[dg.AssetKey("parent"), dg.AssetKey("child")],
            tags={},
            run_config={},
        )
        assert not result.success
        failures = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
        assert [e.step_key for e in failures] == ["child"]
        assert "line 3: bad value" in error_summary(failures[0].event_specific_data.error)


def test_is_unsynced_inside_an_automation_evaluation():
    """`is_unsynced` reads the evaluation's own view: the child of a parent with a new code version
    (re-materialized) is unsynced; the condition built on it (recsys_assets.automation) requests it."""
    from recsys_assets.automation import Unsynced

    def defs(version: str) -> list:
        @dg.asset(code_version=version)
        def parent() -> None:
            return None

        @dg.asset(code_version="1", deps=[parent], automation_condition=Unsynced())
        def child() -> None:
            return None

        return [parent, child]

    with dg.instance_for_test() as instance:
        assert dg.materialize(defs("1"), instance=instance).success
        before = dg.evaluate_automation_conditions(defs=defs("1"), instance=instance)
        assert before.get_num_requested(dg.AssetKey("child")) == 0
        assert dg.materialize(defs("2"), instance=instance, selection=["parent"]).success
        after = dg.evaluate_automation_conditions(defs=defs("2"), instance=instance)
        assert after.get_num_requested(dg.AssetKey("child")) == 1
