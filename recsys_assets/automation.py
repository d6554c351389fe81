"""Declarative automation that follows the refresh's wave rule, so Dagster's daemon finishes a cascade
on its own and each asset page shows how the asset is kept fresh.

An asset is *due* when it is missing, its code version changed, or a parent's data version
changed since it was last requested or materialized. A due asset runs only when no ancestor may still
change (none is due, requested in this tick, or running): one wave per tick, so a child never runs on a
parent whose new version is still coming, and a parent that rebuilt to the same data version stops the
cascade (nothing below it becomes due). The observable input is observed on the ``[schedule]`` cron.
"""

from collections.abc import Sequence

import dagster as dg

from recsys_assets.dagster_internals import is_unsynced

AC = dg.AutomationCondition
SENSOR = "recsys_wave_refresh"


class Unsynced(dg.AutomationCondition):
    """Dagster's "unsynced" status, the one ``recsys refresh`` and the UI's "Materialize unsynced"
    use: a new code version, or a parent's data version newer than the one this asset was built
    from. A state, not an event: a change made while the automation was stopped still counts."""

    @property
    def name(self) -> str:
        return "unsynced"

    def evaluate(self, context) -> dg.AutomationResult:
        if is_unsynced(context.asset_graph_view, context.asset_graph, context.key):
            return dg.AutomationResult(context, context.candidate_subset)
        return dg.AutomationResult(context, context.get_empty_subset())


def due() -> dg.AutomationCondition:
    """Unsynced, or missing (unless its last run failed: no retry loop)."""
    return Unsynced() | (AC.missing() & ~AC.execution_failed())


def _may_change(levels: int) -> dg.AutomationCondition:
    """True for an asset that may still get a new data version: due, requested now, running, or
    (``levels`` more generations up) with an ancestor that may."""
    busy = due() | AC.will_be_requested() | AC.in_progress()
    return busy if levels <= 1 else busy | AC.any_deps_match(_may_change(levels - 1))


def wave_condition(depth: int) -> dg.AutomationCondition:
    """The wave rule for a graph whose longest path has ``depth`` edges (ancestors are looked up
    ``depth`` generations deep)."""
    return (
        due() & ~AC.in_progress() & ~AC.any_deps_missing() & ~AC.any_deps_match(_may_change(max(depth, 1)))
    ).with_label("wave refresh")


def graph_depth(assets: Sequence[dg.AssetsDefinition | dg.SourceAsset]) -> int:
    """Edges on the longest dependency path among ``assets``."""
    parents: dict[dg.AssetKey, set[dg.AssetKey]] = {}
    for a in assets:
        if isinstance(a, dg.AssetsDefinition):
            for key in a.keys:
                parents[key] = set(a.asset_deps.get(key, ()))
        else:
            parents[a.key] = set()
    memo: dict[dg.AssetKey, int] = {}

    def depth(key: dg.AssetKey) -> int:
        if key not in memo:
            memo[key] = max((depth(p) + 1 for p in parents.get(key, ()) if p in parents), default=0)
        return memo[key]

    return max((depth(k) for k in parents), default=0)


def observe_on(cron: str, timezone: str) -> dg.AutomationCondition:
    """For the observable input: observe it once per tick of ``cron``, and when never observed."""
    never = AC.missing() & ~AC.in_progress() & ~AC.execution_failed()
    return (AC.cron_tick_passed(cron, timezone).since_last_handled() | never).with_label(f"observe on {cron}")


def wave_sensor() -> dg.AutomationConditionSensorDefinition:
    """The sensor that evaluates the wave rule (in the code server: :class:`Unsynced` is ours).
    Starts stopped; start it in the UI's Automation tab."""
    return dg.AutomationConditionSensorDefinition(
        SENSOR,
        target=dg.AssetSelection.all(include_sources=True),
        use_user_code_server=True,
        description="Refreshes stale assets in waves, like `recsys refresh` (see README, The UI).",
    )


def with_wave_automation(assets: list) -> list:
    """``assets`` with the wave rule attached to every materializable asset (the observable input
    gets :func:`observe_on` where it is defined)."""
    condition = wave_condition(graph_depth(assets))
    return [
        a.map_asset_specs(lambda spec: spec.replace_attributes(automation_condition=condition))
        if isinstance(a, dg.AssetsDefinition) and a.is_materializable
        else a
        for a in assets
    ]
