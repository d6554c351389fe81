"""Building and observing the graph warns about nothing deprecated, so a user's logs stay clean."""

from __future__ import annotations

import warnings

import dagster as dg

from recsys_assets.definitions import build_definitions
from recsys_assets.refresh import observe_sources
from tests.conftest import tiny_settings


def test_definitions_and_observation_raise_no_deprecation_warning(tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        defs = build_definitions(tiny_settings(), tmp_path)
        with dg.instance_for_test() as instance:
            observe_sources(defs, instance)
    deprecations = [
        f"{w.filename}:{w.lineno}: {w.message}" for w in caught if issubclass(w.category, DeprecationWarning)
    ]
    assert deprecations == []
