"""The declarative wave rule (recsys_assets.automation) on a small graph with controlled data versions:
one wave per tick, a child never runs before a parent whose new version is still coming, and an
unchanged data version stops the cascade."""

from __future__ import annotations

import dagster as dg

from recsys_assets.automation import graph_depth, wave_condition, with_wave_automation

# The data version each asset returns; a test edits it to simulate new content.
VERSIONS = {"a": "1", "b": "1", "c": "1"}


def _result(name: str) -> dg.MaterializeResult:
    return dg.MaterializeResult(data_version=dg.DataVersion(VERSIONS[name]))


@dg.asset(code_version="1")
def a() -> dg.MaterializeResult:
    return _result("a")


@dg.asset(code_version="1", deps=[a])
def b() -> dg.MaterializeResult:
    return _result("b")


@dg.asset(code_version="1", deps=[a, b])
def c() -> dg.MaterializeResult:
    """Depends on ``a`` directly and through ``b``: the case where eager automation builds twice."""
    return _result("c")


ASSETS = with_wave_automation([a, b, c])


def _tick(instance, cursor):
    result = dg.evaluate_automation_conditions(defs=ASSETS, instance=instance, cursor=cursor)
    requested = {k.to_user_string() for k in (dg.AssetKey(n) for n in "abc") if result.get_num_requested(k)}
    return requested, result.cursor


def _run(instance, names):
    selected = [x for x in ASSETS if x.key.to_user_string() in names]
    others = [x for x in ASSETS if x.key.to_user_string() not in names]
    assert dg.materialize(selected + others, instance=instance, selection=sorted(names)).success


def test_graph_depth_counts_the_longest_path():
    assert graph_depth([a, b, c]) == 2
    assert graph_depth([a]) == 0


def test_every_asset_carries_the_wave_condition():
    for x in ASSETS:
        condition = x.specs_by_key[x.key].automation_condition
        assert condition is not None and condition.get_label() == wave_condition(2).get_label()


def test_waves_never_overbuild_and_an_unchanged_version_stops():
    VERSIONS.update(a="1", b="1", c="1")
    with dg.instance_for_test() as instance:
        # Missing: only the root is requested; its children wait for it.
        requested, cursor = _tick(instance, None)
        assert requested == {"a"}
        _run(instance, {"a"})
        requested, cursor = _tick(instance, cursor)
        assert requested == {"b"}  # c waits: b, its parent, may still change
        _run(instance, {"b"})
        requested, cursor = _tick(instance, cursor)
        assert requested == {"c"}
        _run(instance, {"c"})
        requested, cursor = _tick(instance, cursor)
        assert requested == set()

        # New content in a: b first, c only after b, so c runs once.
        VERSIONS["a"] = "2"
        _run(instance, {"a"})
        requested, cursor = _tick(instance, cursor)
        assert requested == {"b"}
        _run(instance, {"b"})
        requested, cursor = _tick(instance, cursor)
        assert requested == {"c"}
        _run(instance, {"c"})
        requested, cursor = _tick(instance, cursor)
        assert requested == set()

        # a rebuilt to the same data version: nothing below it is due.
        _run(instance, {"a"})
        requested, cursor = _tick(instance, cursor)
        assert requested == set()


def test_after_a_refresh_the_automation_requests_nothing(materialized):
    """The project's graph: right after `recsys refresh` everything is up to date, so the wave rule
    requests no materialization (no over-building of what the refresh just built)."""
    _, _, defs, instance, _ = materialized
    result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
    requested = {
        key.to_user_string()
        for key in defs.resolve_asset_graph().materializable_asset_keys
        if result.get_num_requested(key)
    }
    assert requested == set()
    spec = defs.resolve_assets_def("published_catalog").specs_by_key[dg.AssetKey("published_catalog")]
    assert spec.automation_condition is not None


def test_the_input_is_observed_first_and_then_on_the_cron(tmp_path):
    """On a fresh instance the first tick observes the input, nothing else (every asset waits for it);
    the next observation comes with the next tick of the `[schedule]` cron, not before."""
    import datetime as dt

    from recsys_assets.definitions import build_definitions
    from tests.conftest import tiny_settings

    defs = build_definitions(tiny_settings(schedule={"cron": "0 3 * * *"}), tmp_path)
    source = dg.AssetKey("plays_source")
    with dg.instance_for_test() as instance:
        start = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)
        first = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=start)
        assert first.get_num_requested(source) == 1 and first.total_requested == 1
        instance.report_runless_asset_event(dg.AssetObservation(source, tags={}))
        later = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=start + dt.timedelta(hours=1), cursor=first.cursor
        )
        assert later.get_num_requested(source) == 0
        assert later.get_num_requested(dg.AssetKey("raw_plays")) == 1  # the input is there now
        next_day = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, evaluation_time=start + dt.timedelta(days=1), cursor=later.cursor
        )
        assert next_day.get_num_requested(source) == 1


def test_a_change_made_while_the_automation_was_stopped_still_counts():
    """Staleness is a state: the first tick after new content arrived (e.g. by `recsys refresh` of a
    parent alone) still requests the child."""
    VERSIONS.update(a="1", b="1", c="1")
    with dg.instance_for_test() as instance:
        _run(instance, {"a", "b", "c"})
        VERSIONS["a"] = "3"
        _run(instance, {"a"})
        requested, _ = _tick(instance, None)
        assert requested == {"b"}
