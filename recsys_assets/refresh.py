"""Materialize exactly the stale and missing assets, in waves, in-process.

Dagster's "unsynced" is not transitive: a child turns stale only after its parent re-materializes
with a new data version. So a refresh observes the input, resolves the stale and missing assets
with the same resolver the UI's "Materialize unsynced" uses, runs them, and repeats until nothing
is stale. An asset whose output did not change returns the same data version and stops the cascade.

Dagster only knows what it recorded, so the planner also checks every stored output against its latest
materialization (:mod:`recsys_assets.integrity`): a missing, corrupt or disagreeing output (a run
killed between writing and recording) makes its asset stale too.

Uses Dagster internals (``CachingStaleStatusResolver``, ``AssetGraphView``); dagster is pinned and
``tests/test_refresh.py`` covers them.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
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

from recsys_assets.integrity import verify_stored_outputs

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


class UnknownAssetError(ValueError):
    """An asset named on the command line is not in the graph."""


FORCED = "forced (--force)"


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


def stale_or_missing(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    read_only: bool = False,
    notes: list[str] | None = None,
) -> dict[str, str]:
    """Asset key -> why it must run, for every asset the UI shows as unsynced or never materialized
    ("never materialized", or its root stale causes), and every asset whose stored output is missing,
    corrupt or differs from its latest recorded materialization (which the UI cannot see).

    ``read_only``: write nothing (not even the file-hash cache). What could not be checked is appended
    to ``notes``.
    """
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
    checked = [k for k in materializable_keys(defs) if k.to_user_string() not in out]
    verification = verify_stored_outputs(defs, instance, checked, save_cache=not read_only)
    out.update(verification.problems)
    if notes is not None:
        notes.extend(verification.notes)
    return out


def plan_waves(defs: dg.Definitions, stale: Mapping[str, str]) -> list[dict[str, str]]:
    """Every asset a refresh would run, wave by wave: the ``stale`` ones (with why) and, assuming each
    asset that runs changes its output, their descendants ("after <parents that run before it>").

    The same wave rule as :func:`ready_to_run`; a descendant whose parents turn out unchanged is skipped
    by the real refresh, so this is the most a refresh would do.
    """
    graph = defs.resolve_asset_graph()
    materializable = {k.to_user_string() for k in materializable_keys(defs)}
    todo, done, waves = dict(stale), set(), []
    while todo:
        wave = ready_to_run(defs, todo)
        if not wave:  # cannot happen in a DAG; never loop
            break
        waves.append(wave)
        done |= set(wave)
        for key in wave:
            del todo[key]
        for key in wave:
            for child in graph.get(dg.AssetKey.from_user_string(key)).child_keys:
                name = child.to_user_string()
                if name in done or name not in materializable:
                    continue
                if name in todo and not todo[name].startswith("after "):
                    continue  # stale on its own account: keep that reason
                parents = sorted(p.to_user_string() for p in graph.get(child).parent_keys)
                todo[name] = "after " + ", ".join(p for p in parents if p in done)
    return waves


def _validate_forced(defs: dg.Definitions, force: Iterable[str]) -> set[str]:
    """The forced asset names, checked against the graph (one-line error listing the valid ones)."""
    forced = set(force)
    valid = [k.to_user_string() for k in materializable_keys(defs)]
    unknown = sorted(forced - set(valid))
    if unknown:
        raise UnknownAssetError(f"unknown asset(s) {', '.join(unknown)}: choose from {', '.join(valid)}")
    return forced


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
    """Runs of this instance that are queued or running. A run whose ``recsys refresh`` process has died
    (killed mid-run) is marked failed instead of blocking every later refresh."""
    alive, dead = runs_recorded_in_progress(instance, exclude_run_ids)
    for run in dead:
        instance.report_run_failed(run)
    return alive


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
    graph = defs.resolve_asset_graph()
    for key in observable_keys(defs):
        name = key.to_user_string()
        current = (source_versions or {}).get(name)
        if current is None or current == latest_observed_version(instance, key):
            continue
        for child in sorted(graph.get(key).child_keys, key=lambda k: k.to_user_string()):
            stale.setdefault(child.to_user_string(), f"{name}: the input changed since it was last observed")
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
    force: Iterable[str] = (),
) -> RefreshResult:
    """Observe the input, then materialize stale and missing assets in waves until none is left.

    ``source_versions``: see :func:`observe_sources`. ``lock_path``: a file locked (``flock``) for the
    whole refresh, so two refreshes started at the same moment cannot both pass the in-progress check.
    ``show_errors``: see :func:`observe_sources`.
    ``force``: asset names to re-materialize whether stale or not (then what turns stale after them).
    Raises :class:`UnknownAssetError` for a forced name not in the graph, :class:`RefreshInProgressError`
    (before doing anything) when another run is in progress, and :class:`RefreshFailedError` naming the
    failed assets when a wave fails.
    """
    forced = _validate_forced(defs, force)
    with _exclusive(lock_path):
        return _refresh(
            defs, instance, log, exclude_run_ids, max_waves, log_level, source_versions, show_errors, forced
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
    forced: set[str],
) -> RefreshResult:
    active = runs_in_progress(instance, exclude_run_ids)
    if active:
        names = ", ".join(f"{r.run_id[:8]} ({r.job_name}, {r.status.value})" for r in active)
        raise RefreshInProgressError(f"not starting: run(s) in progress: {names}")
    observe_sources(defs, instance, source_versions, show_errors)
    job = _job(defs, show_errors)
    tags = {REFRESH_TAG: "wave", PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname()}
    result = RefreshResult()
    notes: list[str] = []
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
