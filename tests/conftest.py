"""Shared fixtures: a tiny synthetic configuration and a pipeline materialized once per session."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from recsys_assets.settings import CPU_COUNT, Settings

HETREC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def tiny_settings(**sections) -> Settings:
    """Settings small enough for a full pipeline run in seconds."""
    base = Settings().replace(
        synthetic={
            "n_users": 400,
            "n_artists": 500,
            "artists_per_user": 20.0,
            "n_alias_pairs": 6,
            "n_genres": 6,
        },
        als={"factors": 16, "iterations": 6},
        lsa={"factors": 12},
        # "ann" so the index path and its recall check run (auto would pick exact at this size).
        related={"n": 10, "recall_sample": 300, "min_recall_at_10": 0.9, "method": "ann"},
        recommend={"n": 10},
        runtime={"threads": min(2, CPU_COUNT), "duckdb_memory_limit": "1GB"},
    )
    return base.replace(**sections) if sections else base


@pytest.fixture(scope="session")
def materialized(tmp_path_factory):
    """The default graph on tiny synthetic data, refreshed once: (settings, home, defs, instance, result)."""
    from recsys_assets.definitions import build_definitions
    from recsys_assets.refresh import refresh

    home = tmp_path_factory.mktemp("recsys_home")
    settings = tiny_settings()
    defs = build_definitions(settings, home)
    instance = dg.DagsterInstance.ephemeral()
    result = refresh(defs, instance, log=lambda _: None)
    return settings, home, defs, instance, result


@pytest.fixture
def recsys_home_env(materialized, monkeypatch):
    """RECSYS_HOME pointing at the session's materialized home."""
    _, home, *_ = materialized
    monkeypatch.setenv("RECSYS_HOME", str(home))
    monkeypatch.delenv("RECSYS_CONFIG", raising=False)
    return Path(home)


def hetrec_available() -> bool:
    return (HETREC_DIR / "user_artists.dat").is_file()
