"""The Definitions object: loads, validates with the dagster CLI, and its schedule never overlaps runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.definitions import build_definitions
from recsys_assets.refresh import materializable_keys
from tests.conftest import tiny_settings

ROOT = Path(__file__).resolve().parent.parent


def test_definitions_load_with_versions_on_every_asset(tmp_path):
    defs = build_definitions(tiny_settings(), tmp_path)
    graph = defs.resolve_asset_graph()
    keys = materializable_keys(defs)
    assert {k.to_user_string() for k in keys} >= {
        "raw_plays",
        "als_factors",
        "related_artists",
        "evaluation_report",
    }
    for key in keys:
        assert graph.get(key).code_version, key
    assert defs.resolve_job_def("refresh_job") is not None
    assert [s.name for s in defs.schedules] == ["refresh_schedule"]


def test_code_version_changes_only_for_assets_reading_the_changed_setting(tmp_path):
    versions = lambda s: {  # noqa: E731
        k.to_user_string(): build_definitions(s, tmp_path).resolve_asset_graph().get(k).code_version
        for k in materializable_keys(build_definitions(s, tmp_path))
    }
    base = versions(tiny_settings())
    changed = versions(tiny_settings(lsa={"factors": 8}))
    assert {k for k in base if base[k] != changed[k]} == {"lsa_factors", "eval_lsa_factors"}
    threads_only = versions(tiny_settings(runtime={"threads": 1}))
    assert threads_only == base


def test_dagster_cli_validates_the_workspace(tmp_path):
    env = dict(os.environ, RECSYS_HOME=str(tmp_path), DAGSTER_HOME=str(tmp_path))
    env.pop("RECSYS_CONFIG", None)
    result = subprocess.run(
        [Path(sys.executable).parent / "dagster", "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout


def test_schedule_skips_while_a_run_is_in_progress(tmp_path):
    defs = build_definitions(tiny_settings(), tmp_path)
    schedule = defs.resolve_schedule_def("refresh_schedule")
    with dg.instance_for_test() as instance:
        with dg.build_schedule_context(instance=instance) as context:
            requests = schedule.evaluate_tick(context).run_requests
        assert len(requests) == 1
        job = defs.resolve_implicit_global_asset_job_def()
        instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
        with dg.build_schedule_context(instance=instance) as context:
            result = schedule.evaluate_tick(context)
        assert not result.run_requests and "in progress" in result.skip_message


@pytest.mark.slow
def test_refresh_job_materializes_then_does_nothing(tmp_path):
    defs = build_definitions(tiny_settings(), tmp_path)
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def("refresh_job")
    assert job.execute_in_process(instance=instance).success
    every = {k for k in materializable_keys(defs)}
    assert all(instance.get_latest_materialization_event(k) for k in every)
    before = len(instance.get_runs())
    assert job.execute_in_process(instance=instance).success
    # the second refresh launched only its own run and the source observation: no asset wave
    assert len(instance.get_runs()) - before == 2
