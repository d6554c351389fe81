"""The one ``Definitions`` object: assets, checks, resources, the refresh job and its schedule."""

import warnings
from pathlib import Path

import dagster as dg

from recsys_assets.assets.answers import build_answer_assets
from recsys_assets.assets.evaluation import build_evaluation_assets
from recsys_assets.assets.factors import build_factor_assets
from recsys_assets.assets.indexes import build_index_assets
from recsys_assets.assets.ingest import build_ingest_assets
from recsys_assets.assets.matrices import build_matrix_assets
from recsys_assets.assets.publish import build_publish_assets
from recsys_assets.assets.tuning import build_tuning_assets
from recsys_assets.automation import wave_sensor, with_wave_automation
from recsys_assets.cron import is_valid_cron_string
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.refresh import refresh, runs_in_progress
from recsys_assets.resources import build_resources
from recsys_assets.settings import Settings, SettingsError, load_settings, recsys_home


def build_refresh_job(settings: Settings, home: Path) -> dg.JobDefinition:
    """A job whose single op runs :func:`recsys_assets.refresh.refresh` (observe, then stale waves)
    against the instance it runs in: what the schedule launches, and the same as ``recsys refresh``."""

    @dg.op(description="Observe the input and materialize stale and missing assets in waves.")
    def refresh_stale_assets(context: dg.OpExecutionContext) -> None:
        defs = build_definitions(settings, home)
        result = refresh(
            defs,
            context.instance,
            log=context.log.info,
            exclude_run_ids={context.run_id},
            lock_path=home / "refresh.lock",
        )
        context.log.info(f"refreshed {len(result.materialized)} asset(s) in {len(result.waves)} wave(s)")

    @dg.job(description="Refresh only what is stale (the schedule's target).")
    def refresh_job() -> None:
        refresh_stale_assets()

    return refresh_job


def check_cron(settings: Settings) -> None:
    """:class:`SettingsError` naming the file when Dagster cannot schedule ``[schedule] cron``."""
    if not is_valid_cron_string(settings.schedule.cron):
        where = f"{settings.source_file}: " if settings.source_file else ""
        raise SettingsError(
            f"{where}[schedule] cron = {settings.schedule.cron!r} is not a valid cron expression"
        )


def build_schedule(settings: Settings, job: dg.JobDefinition) -> dg.ScheduleDefinition:
    """The refresh schedule; skips a tick while any run of this instance is in progress."""
    check_cron(settings)

    @dg.schedule(
        job=job,
        cron_schedule=settings.schedule.cron,
        execution_timezone=settings.schedule.timezone,
        description="Refresh stale assets; never overlaps a run in progress.",
    )
    def refresh_schedule(context: dg.ScheduleEvaluationContext):
        active = runs_in_progress(context.instance)
        if active:
            return dg.SkipReason(
                f"{len(active)} run(s) in progress: {', '.join(r.run_id[:8] for r in active)}"
            )
        return dg.RunRequest()

    return refresh_schedule


def spark_resource(engine: EngineSettings) -> dg.ConfigurableResource:
    """The ``pyspark`` resource of ``[engine] kind = "spark"``, after the checks that need no JVM (pyspark
    importable, Java 17+, master reachable), so a bad setup fails here in one line
    (:class:`~recsys_assets.engines.spark.SparkEngineError`) before any asset runs. The session starts
    when the first Spark asset asks for it."""
    from recsys_assets.engines import spark

    spark.preflight(engine)
    from dagster_pyspark import LazyPySparkResource

    return LazyPySparkResource(spark_config=spark.session_config(engine))


def build_definitions(settings: Settings | None = None, home: Path | None = None) -> dg.Definitions:
    """Definitions for ``settings`` (default: the settings file in force) rooted at ``home``
    (default ``$RECSYS_HOME``). Dagster's BetaWarnings about the beta APIs used on purpose here
    (multi_observable_source_asset, the automation sensor's options) stay out of users' logs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)
        return _build_definitions(settings, home)


def _build_definitions(settings: Settings | None, home: Path | None) -> dg.Definitions:
    """Definitions for ``settings`` (default: the settings file in force) rooted at ``home``
    (default ``$RECSYS_HOME``)."""
    settings = settings if settings is not None else load_settings()
    home = Path(home) if home is not None else recsys_home()
    # Before any asset: the source's automation condition is built from the same cron.
    check_cron(settings)
    resources = build_resources(home, f"{settings.runtime.duckdb_memory_limit_bytes}B")
    if settings.engine.kind == "spark":
        resources["pyspark"] = spark_resource(settings.engine)
    assets = [
        *build_ingest_assets(settings),
        *build_matrix_assets(settings),
        *build_tuning_assets(settings),
        *build_factor_assets(settings),
        *build_index_assets(settings),
        *build_answer_assets(settings),
        *build_evaluation_assets(settings),
    ]
    checks = [a for a in assets if isinstance(a, dg.AssetChecksDefinition)]
    assets = [a for a in assets if not isinstance(a, dg.AssetChecksDefinition)]
    # Publishing waits for every check of the graph: a failed one keeps the previous generation.
    check_keys = sorted({key for a in [*assets, *checks] for key in getattr(a, "check_keys", ())}, key=str)
    assets += build_publish_assets(settings, check_keys)
    # The daemon (when its automation sensor is started) refreshes in the same waves as `recsys refresh`.
    assets = with_wave_automation(assets)
    job = build_refresh_job(settings, home)
    return dg.Definitions(
        assets=assets,
        asset_checks=checks,
        jobs=[job],
        schedules=[build_schedule(settings, job)],
        sensors=[wave_sensor()],
        resources=resources,
        # Steps share one process: no per-step interpreter start, numba compiles once per run.
        executor=dg.in_process_executor,
    )
