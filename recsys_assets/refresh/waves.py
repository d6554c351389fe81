"""The wave loop: observe the input, then run the assets that are ready, until nothing is stale."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg

from recsys_assets.dagster_internals import error_summary, execute_in_code_location, workspace_origin
from recsys_assets.progress import claim_terminal
from recsys_assets.refresh.guard import (
    exclusive,
    fail_dead_runs,
    process_tags,
    refuse_if_running,
    runs_recorded_in_progress,
)
from recsys_assets.refresh.planning import (
    FORCED,
    latest_observed_version,
    observable_keys,
    plan_waves,
    ready_to_run,
    sources_changed,
    stale_or_missing,
    validate_forced,
)

REFRESH_TAG = "recsys/refresh"
# The workspace `recsys ui` serves: refresh runs are recorded in its code location, so the UI's
# Overview timeline shows them beside the runs launched from the UI.
WORKSPACE_FILE = Path(__file__).resolve().parents[2] / "workspace.yaml"


class RefreshFailedError(RuntimeError):
    """An asset failed during a refresh; earlier waves stay materialized."""


@dataclass
class RefreshResult:
    """What a refresh did: the assets it ran per wave (with why), and whether it succeeded."""

    waves: list[dict[str, str]] = field(default_factory=list)
    run_ids: list[str] = field(default_factory=list)

    @property
    def materialized(self) -> list[str]:
        return [key for wave in self.waves for key in wave]


def failed_check_names(
    run: dg.ExecuteInProcessResult | dg.JobExecutionResult, severity: dg.AssetCheckSeverity
) -> list[str]:
    """The checks of ``run`` that failed with ``severity`` (ERROR blocks what depends on them; WARN only
    warns, e.g. a model scoring below the popularity baseline)."""
    return sorted(
        event.asset_check_evaluation_data.asset_check_key.to_user_string()
        for event in run.all_events
        if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
        and not event.asset_check_evaluation_data.passed
        and event.asset_check_evaluation_data.severity == severity
    )


def failure_message(run: dg.ExecuteInProcessResult | dg.JobExecutionResult) -> str | None:
    """Why an in-process run failed, on one line, or ``None`` if it succeeded with every check passing.

    Failed asset checks come first (what depends on them did not run); otherwise
    ``"<step> failed: <error>"`` for each failed step (see :func:`error_summary`), or the run's own
    failure when it failed outside any step. Ends with the run id whose event log holds the tracebacks.
    """
    failed_checks = failed_check_names(run, dg.AssetCheckSeverity.ERROR)
    if failed_checks:
        return (
            f"check(s) failed: {', '.join(failed_checks)} (run {run.run_id}); what depends on them did not "
            "run and the published tables are unchanged"
        )
    if run.success:
        return None
    messages = [
        f"{event.step_key or '?'} failed: {error_summary(event.event_specific_data.error)}"
        for event in run.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    ]
    if not messages:  # the run failed outside any step (e.g. while starting)
        messages = [
            f"run failed: {error_summary(event.event_specific_data.error)}"
            for event in run.all_events
            if event.event_type == dg.DagsterEventType.RUN_FAILURE
            and getattr(event.event_specific_data, "error", None) is not None
        ]
    return f"{'; '.join(messages) or 'run failed for an unknown reason'} (run {run.run_id[:8]})"


@dg.logger(
    {
        "log_level": dg.Field(str, is_required=False, default_value="INFO"),
        "name": dg.Field(str, is_required=False, default_value="dagster"),
    },
    description="Dagster's console logger without ERROR records: progress lines only.",
)
def progress_console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """Dagster's colored console logger, minus records at ERROR and above. Those are the framework's
    failure events (each with a full traceback, the run failure repeating the step's) and the
    "Dependencies ... Not executing" lines; a refresh reports the failure itself, in one line, and the
    instance's event log keeps the tracebacks."""
    console = dg.colored_console_logger.logger_fn(init_context)
    console.addFilter(lambda record: record.levelno < logging.ERROR)
    return console


def _job(defs: dg.Definitions, show_errors: bool) -> dg.JobDefinition:
    """The asset job, logging to the console quietly unless ``show_errors`` (``recsys --verbose``)."""
    job = defs.resolve_implicit_global_asset_job_def()
    return job if show_errors else job.with_logger_defs({"console": progress_console_logger})


@dataclass
class StatusReport:
    """What a refresh would do now: its waves (asset -> why), the runs recorded in progress whose process
    is alive (a refresh would refuse to start) or dead (a refresh marks them failed), and notes."""

    waves: list[dict[str, str]]
    running: list[dg.DagsterRun]
    dead: list[dg.DagsterRun]
    notes: list[str]


def status(
    defs: dg.Definitions, instance: dg.DagsterInstance, source_versions: Mapping[str, str] | None = None
) -> StatusReport:
    """The whole plan of a refresh, computed without writing anything: the sources' current versions
    (``source_versions``, as for :func:`observe_sources`) are compared with the recorded observations in
    memory instead of being observed, no run is marked failed and no cache is written."""
    notes: list[str] = []
    stale = stale_or_missing(defs, instance, read_only=True, notes=notes)
    for name, why in sources_changed(defs, instance, source_versions).items():
        stale.setdefault(name, why)
    running, dead = runs_recorded_in_progress(instance)
    return StatusReport(plan_waves(defs, stale), running, dead, notes)


def observe_sources(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    current: Mapping[str, str] | None = None,
    show_errors: bool = False,
) -> None:
    """Observe every observable source (the input file's fingerprint), recording its data version.

    ``current`` maps source keys to versions the caller already computed with the same function the
    source observes with; sources whose recorded version equals it are not observed again (a no-op
    refresh then costs a ``stat`` of the input, not a Dagster run). ``show_errors``: let Dagster's console
    logger print failure events with their tracebacks (by default a failure is only raised, in one line).
    """
    keys = [
        key
        for key in observable_keys(defs)
        if current is None
        or current.get(key.to_user_string()) is None
        or latest_observed_version(instance, key) != current[key.to_user_string()]
    ]
    if keys:
        run = execute_in_code_location(
            _job(defs, show_errors),
            instance,
            workspace_origin(WORKSPACE_FILE),
            asset_selection=keys,
            tags={REFRESH_TAG: "observe", **process_tags()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
        )
        message = failure_message(run)
        if message:
            raise RefreshFailedError(f"observing the input failed: {message}")


def refresh(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    log: Callable[[str], None] = print,
    exclude_run_ids: set[str] = frozenset(),
    max_waves: int = 50,
    log_level: str = "INFO",
    source_versions: Mapping[str, str] | None = None,
    lock_path: Path | None = None,
    show_errors: bool = False,
    force: Iterable[str] = (),
) -> RefreshResult:
    """Observe the input, then materialize stale and missing assets in waves until none is left.

    ``source_versions``: see :func:`observe_sources`. ``lock_path``: a file locked (``flock``) for the
    whole refresh, so two refreshes started at the same moment cannot both pass the in-progress check.
    ``show_errors``: see :func:`observe_sources`.
    ``force``: asset names to re-materialize whether stale or not (then what turns stale after them).
    Runs recorded in progress whose refresh process died are marked failed first.
    Raises :class:`UnknownAssetError` for a forced name not in the graph, :class:`RefreshInProgressError`
    (before doing anything) when another run is in progress, and :class:`RefreshFailedError` naming the
    failed assets when a wave fails.
    """
    forced = validate_forced(defs, force)
    claim_terminal()  # progress bars reach the terminal while Dagster captures each run's output
    with exclusive(lock_path):
        fail_dead_runs(instance, exclude_run_ids)
        refuse_if_running(instance, exclude_run_ids)
        observe_sources(defs, instance, source_versions, show_errors)
        return run_waves(defs, instance, log, max_waves, log_level, show_errors, forced)


def run_waves(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    log: Callable[[str], None],
    max_waves: int,
    log_level: str,
    show_errors: bool,
    forced: set[str],
) -> RefreshResult:
    """Materialize, wave by wave, the stale (and ``forced``) assets that are ready, until none is left."""
    job = _job(defs, show_errors)
    origin = workspace_origin(WORKSPACE_FILE)
    tags = {REFRESH_TAG: "wave", **process_tags()}
    result = RefreshResult()
    notes: list[str] = []
    forced = set(forced)
    for wave_number in range(1, max_waves + 1):
        stale = stale_or_missing(defs, instance, notes=notes)
        stale |= {key: FORCED for key in forced if key not in stale}
        todo = ready_to_run(defs, stale)
        forced -= set(todo)
        for note in dict.fromkeys(notes):
            log(f"note: {note}")
        notes.clear()
        if not todo:
            break
        for key, why in todo.items():
            log(f"wave {wave_number}: {key} <- {why}")
        run = execute_in_code_location(
            job,
            instance,
            origin,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in todo],
            tags=tags,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        result.waves.append(todo)
        result.run_ids.append(run.run_id)
        for check in failed_check_names(run, dg.AssetCheckSeverity.WARN):
            log(f"warning: check {check} failed (a warning: it blocks nothing; see the asset's page)")
        for check in failed_check_names(run, dg.AssetCheckSeverity.WARN):
            log(f"warning: check {check} failed (a warning: it blocks nothing; see the asset's page)")
        message = failure_message(run)
        if message:
            raise RefreshFailedError(message)
    else:
        raise RefreshFailedError(
            f"still stale after {max_waves} waves: {sorted(stale_or_missing(defs, instance))}"
        )
    if not result.waves:
        log("nothing to do: every asset is up to date")
    return result
