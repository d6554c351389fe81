"""Cron validation through Dagster's public API, so a bad ``[schedule] cron`` fails as a settings error."""

from __future__ import annotations

import dagster as dg


@dg.op
def _noop() -> None:
    """The op of the throw-away job a candidate schedule is built on."""


@dg.job
def _probe_job() -> None:
    _noop()


def is_valid_cron_string(cron: str) -> bool:
    """Whether Dagster accepts ``cron`` as a schedule (standard five-field cron, values in range).

    Builds a throw-away :class:`dagster.ScheduleDefinition`, which validates its cron expression the
    same way the real schedule will.
    """
    try:
        dg.ScheduleDefinition(name="cron_probe", job=_probe_job, cron_schedule=cron)
    except dg.DagsterInvalidDefinitionError:
        return False
    return True
