"""Materialize exactly the stale and missing assets, in waves, in-process.

Dagster's "unsynced" is not transitive: a child turns stale only after its parent re-materializes
with a new data version. So a refresh observes the input, resolves the stale and missing assets
with the same resolver the UI's "Materialize unsynced" uses, runs them, and repeats until nothing
is stale. An asset whose output did not change returns the same data version and stops the cascade.

Uses Dagster internals (``CachingStaleStatusResolver``, ``AssetGraphView``); dagster is pinned and
``tests/test_refresh.py`` covers them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
from dagster._core.asset_graph_view.asset_graph_view import AssetGraphView, TemporalContext
from dagster._core.definitions.data_version import (
    CachingStaleStatusResolver,
    StaleStatus,
    extract_data_version_from_entry,
)
from dagster._time import get_current_datetime
from dagster._utils.error import SerializableErrorInfo

REFRESH_TAG = "recsys/refresh"
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


def _resolver(defs: dg.Definitions, instance: dg.DagsterInstance) -> CachingStaleStatusResolver:
    asset_graph = defs.resolve_asset_graph()
    view = AssetGraphView(
        temporal_context=TemporalContext(effective_dt=get_current_datetime(), last_event_id=None),
        instance=instance,
        asset_graph=asset_graph,
    )
    return CachingStaleStatusResolver(instance=instance, asset_graph=asset_graph, loading_context=view)


def materializable_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return sorted(graph.materializable_asset_keys, key=lambda k: k.to_user_string())


def observable_keys(defs: dg.Definitions) -> list[dg.AssetKey]:
    graph = defs.resolve_asset_graph()
    return sorted(graph.observable_asset_keys, key=lambda k: k.to_user_string())


def stale_or_missing(defs: dg.Definitions, instance: dg.DagsterInstance) -> dict[str, str]:
    """Asset key -> why it must run ("missing", or its root stale causes), for every asset the UI shows
    as unsynced or never materialized."""
    resolver = _resolver(defs, instance)
    out: dict[str, str] = {}
    for key in materializable_keys(defs):
        status = resolver.get_status(key)
        if status == StaleStatus.MISSING:
            out[key.to_user_string()] = "never materialized"
        elif status == StaleStatus.STALE:
            causes = resolver.get_stale_root_causes(key)
            out[key.to_user_string()] = (
                "; ".join(sorted({f"{c.asset_key.to_user_string()}: {c.reason}" for c in causes})) or "stale"
            )
    return out


def ready_to_run(defs: dg.Definitions, stale: dict[str, str]) -> dict[str, str]:
    """The stale assets that can run now: those with no ancestor still *pending*, i.e. downstream of a
    stale asset without being stale itself yet. Such an ancestor may change once this wave has run,
    so running its descendant now would read an old input (e.g. recommendations from old factors after
    the play matrix changed); it waits for a later wave instead."""
    graph = defs.resolve_asset_graph()
    stale_keys = {dg.AssetKey.from_user_string(k) for k in stale}
    pending: set[dg.AssetKey] = set()
    frontier = list(stale_keys)
    while frontier:
        for child in graph.get(frontier.pop()).child_keys:
            if child not in pending:
                pending.add(child)
                frontier.append(child)
    pending -= stale_keys
    return {
        key: why
        for key, why in stale.items()
        if not graph.get_ancestor_asset_keys(dg.AssetKey.from_user_string(key)) & pending
    }


def _process_alive(run: dg.DagsterRun) -> bool:
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


def runs_in_progress(
    instance: dg.DagsterInstance, exclude_run_ids: set[str] = frozenset()
) -> list[dg.DagsterRun]:
    """Runs of this instance that are queued or running. A run started by a ``recsys refresh`` whose
    process has died (killed mid-run) is marked failed instead of blocking every later refresh."""
    active = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        if run.run_id in exclude_run_ids:
            continue
        if not _process_alive(run):
            instance.report_run_failed(run)
            continue
        active.append(run)
    return active


def latest_observed_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The data version recorded by the latest observation of a source asset, if any."""
    record = instance.get_latest_data_version_record(key, is_source=True)
    if record is None:
        return None
    version = extract_data_version_from_entry(record.event_log_entry)
    return version.value if version is not None else None


def error_summary(error: SerializableErrorInfo) -> str:
    """One line for a Dagster-recorded error (``SerializableErrorInfo``): the user's exception that
    Dagster's wrappers (``DagsterExecutionStepExecutionError`` and kin) were raised from, as
    ``"ClassName: message"``, its lines joined. The traceback stays in the run's event log."""
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


def failure_message(run: dg.ExecuteInProcessResult) -> str:
    """Why an in-process run failed, on one line: ``"<step> failed: <error>"`` for each failed step
    (see :func:`error_summary`), ending with the run id whose event log holds the tracebacks."""
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
        run = _job(defs, show_errors).execute_in_process(
            instance=instance,
            asset_selection=keys,
            tags={REFRESH_TAG: "observe", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()},
            run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}},
            raise_on_error=False,
        )
        if not run.success:
            raise RefreshFailedError(f"observing the input failed: {failure_message(run)}")


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
) -> RefreshResult:
    """Observe the input, then materialize stale and missing assets in waves until none is left.

    ``source_versions``: see :func:`observe_sources`. ``lock_path``: a file locked (``flock``) for the
    whole refresh, so two refreshes started at the same moment cannot both pass the in-progress check.
    ``show_errors``: see :func:`observe_sources`.
    Raises :class:`RefreshInProgressError` (before doing anything) when another run is in progress,
    and :class:`RefreshFailedError` naming the failed assets when a wave fails.
    """
    with _exclusive(lock_path):
        return _refresh(
            defs, instance, log, exclude_run_ids, max_waves, log_level, source_versions, show_errors
        )


@contextlib.contextmanager
def _exclusive(lock_path: Path | None) -> Iterator[None]:
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


def _refresh(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    log: Callable[[str], None],
    exclude_run_ids: set[str],
    max_waves: int,
    log_level: str,
    source_versions: Mapping[str, str] | None,
    show_errors: bool,
) -> RefreshResult:
    active = runs_in_progress(instance, exclude_run_ids)
    if active:
        names = ", ".join(f"{r.run_id[:8]} ({r.job_name}, {r.status.value})" for r in active)
        raise RefreshInProgressError(f"not starting: run(s) in progress: {names}")
    observe_sources(defs, instance, source_versions, show_errors)
    job = _job(defs, show_errors)
    tags = {REFRESH_TAG: "wave", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    result = RefreshResult()
    for wave_number in range(1, max_waves + 1):
        todo = ready_to_run(defs, stale_or_missing(defs, instance))
        if not todo:
            break
        for key, why in todo.items():
            log(f"wave {wave_number}: {key} <- {why}")
        run = job.execute_in_process(
            instance=instance,
            asset_selection=[dg.AssetKey.from_user_string(k) for k in todo],
            tags=tags,
            raise_on_error=False,
            run_config={"loggers": {"console": {"config": {"log_level": log_level}}}},
        )
        result.waves.append(todo)
        result.run_ids.append(run.run_id)
        failed_checks = sorted(
            f"{event.asset_check_evaluation_data.asset_check_key.to_user_string()}"
            for event in run.all_events
            if event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION
            and not event.asset_check_evaluation_data.passed
        )
        if failed_checks:
            raise RefreshFailedError(
                f"check(s) failed: {', '.join(failed_checks)} (run {run.run_id}); what depends on them did not "
                "run and the published tables are unchanged"
            )
        if not run.success:
            raise RefreshFailedError(failure_message(run))
    else:
        raise RefreshFailedError(
            f"still stale after {max_waves} waves: {sorted(stale_or_missing(defs, instance))}"
        )
    if not result.waves:
        log("nothing to do: every asset is up to date")
    return result
