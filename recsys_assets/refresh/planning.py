"""Planning a refresh: which assets are stale or missing, and which of them can run in this wave."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import dagster as dg

from recsys_assets.dagster_internals import StalenessResolver, data_version_of
from recsys_assets.integrity import verify_stored_outputs

FORCED = "forced (--force)"


class UnknownAssetError(ValueError):
    """An asset named on the command line is not in the graph."""


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
    resolver = StalenessResolver(defs, instance)
    out: dict[str, str] = {}
    for key in materializable_keys(defs):
        status = resolver.status(key)
        if status == "missing":
            out[key.to_user_string()] = "never materialized"
        elif status == "stale":
            causes = resolver.root_causes(key)
            out[key.to_user_string()] = "; ".join(f"{c.asset}: {c.reason}" for c in causes) or "stale"
    checked = [k for k in materializable_keys(defs) if k.to_user_string() not in out]
    verification = verify_stored_outputs(defs, instance, checked, save_cache=not read_only)
    out.update(verification.problems)
    if notes is not None:
        notes.extend(verification.notes)
    return out


def ready_to_run(defs: dg.Definitions, stale: Mapping[str, str]) -> dict[str, str]:
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


def validate_forced(defs: dg.Definitions, force: Iterable[str]) -> set[str]:
    """The forced asset names, checked against the graph (one-line error listing the valid ones)."""
    forced = set(force)
    valid = [k.to_user_string() for k in materializable_keys(defs)]
    unknown = sorted(forced - set(valid))
    if unknown:
        raise UnknownAssetError(f"unknown asset(s) {', '.join(unknown)}: choose from {', '.join(valid)}")
    return forced


def latest_observed_version(instance: dg.DagsterInstance, key: dg.AssetKey) -> str | None:
    """The data version recorded by the latest observation of a source asset, if any."""
    record = instance.get_latest_data_version_record(key, is_source=True)
    return None if record is None else data_version_of(record.event_log_entry)


def sources_changed(
    defs: dg.Definitions, instance: dg.DagsterInstance, source_versions: Mapping[str, str] | None
) -> dict[str, str]:
    """The children of every source whose current version (``source_versions``) differs from its latest
    recorded observation, with why: what a refresh would find stale after observing, computed without
    observing."""
    graph = defs.resolve_asset_graph()
    out: dict[str, str] = {}
    for key in observable_keys(defs):
        name = key.to_user_string()
        current = (source_versions or {}).get(name)
        if current is None or current == latest_observed_version(instance, key):
            continue
        for child in sorted(graph.get(key).child_keys, key=lambda k: k.to_user_string()):
            out.setdefault(child.to_user_string(), f"{name}: the input changed since it was last observed")
    return out
