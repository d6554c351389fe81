"""Every failure of the `recsys` command ends with one line naming its cause, without a traceback.

Each test runs the command in-process (``main([...])``) and reads stderr: the last line must carry the
cause, and neither Python's nor Dagster's traceback ("Traceback", "Stack Trace") may appear unless
``--verbose`` asks for it.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import textwrap
import zipfile
from pathlib import Path

import pytest

from recsys_assets.cli import main

TRACEBACK_MARKERS = ("Traceback", "Stack Trace", "DagsterExecutionStepExecutionError")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh home, Dagster instance and settings file; returns a function writing the settings."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    config = tmp_path / "recsys.toml"
    monkeypatch.setenv("RECSYS_CONFIG", str(config))

    def write(text: str) -> Path:
        config.write_text(textwrap.dedent(text))
        return config

    write("[runtime]\nthreads = 1\n")
    return write


def _last_line(capsys: pytest.CaptureFixture[str], verbose: bool = False) -> str:
    err = capsys.readouterr().err
    if not verbose:
        for marker in TRACEBACK_MARKERS:
            assert marker not in err, err
    lines = err.strip().splitlines()
    assert lines, "nothing on stderr"
    return lines[-1]


def _triples(path: Path, n_users: int = 60, n_artists: int = 40, per_user: int = 8) -> Path:
    """A small, valid ``user,item,value`` file (every user plays ``per_user`` distinct artists)."""
    rows = ["user,item,value"]
    for u in range(n_users):
        rows += [f"u{u},a{(u * 7 + j) % n_artists},{1 + (u + j) % 5}" for j in range(per_user)]
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.slow
def test_a_file_with_no_valid_line_names_the_file_once(cli_env, tmp_path, capsys):
    data = tmp_path / "plays.tsv"
    data.write_bytes(b"u\xff1\tmbid\tart\xff\t3\n" * 82)
    cli_env(f'[data]\nsource = "lastfm360k"\npath = "{data}"\n')
    assert main(["refresh"]) == 1
    err = capsys.readouterr().err
    for marker in TRACEBACK_MARKERS:
        assert marker not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith("recsys: raw_plays failed: LoadError: ")
    assert f"{data}: none of 82 lines is valid (invalid UTF-8: 82 (first at line 1))" in last
    assert err.count("none of 82 lines") == 1  # once, not once per Dagster event
    # The traceback is not lost: the run's event log in the instance keeps it (the UI shows it).
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(filters=dg.RunsFilter(statuses=[dg.DagsterRunStatus.FAILURE]))
        assert run.run_id[:8] in last
        (entry,) = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
    cause = entry.dagster_event.event_specific_data.error.cause
    assert cause.cls_name == "LoadError" and any("_check_counts" in frame for frame in cause.stack)


@pytest.mark.slow
def test_a_reject_share_over_the_limit_is_one_line(cli_env, tmp_path, capsys):
    data = _triples(tmp_path / "plays.csv")
    data.write_text(data.read_text() + "only-two,fields\n" * 200)
    cli_env(
        f"""
        [data]
        source = "triples"
        path = "{data}"
        max_reject_fraction = 0.1
        """
    )
    assert main(["refresh"]) == 1
    last = _last_line(capsys)
    assert last.startswith("recsys: raw_plays failed: LoadError: ")
    assert "max_reject_fraction" in last and "wrong field count" in last


@pytest.mark.slow
def test_a_setting_that_fails_at_run_time_names_the_asset_and_cause(cli_env, tmp_path, capsys):
    """LSA factors above what the loaded matrix allows (40 artists) can only fail once the data is known."""
    data = _triples(tmp_path / "plays.csv")
    cli_env(
        f"""
        [data]
        source = "triples"
        path = "{data}"
        [als]
        factors = 8
        iterations = 2
        [lsa]
        factors = 45
        [related]
        method = "exact"
        [runtime]
        threads = 1
        """
    )
    assert main(["refresh"]) == 1
    last = _last_line(capsys)
    # The asset that checks the factors against the data names the setting and the value.
    assert last.startswith("recsys: ") and "lsa_factors failed: " in last and "45" in last


@pytest.mark.slow
@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            OSError(errno.ENOSPC, "No space left on device", "/data/artifacts/als_factors.npz.tmp"),
            "raw_plays failed: OSError: [Errno 28] No space left on device: '/data/artifacts/als_factors.npz.tmp'",
        ),
        # What numpy raises on a truncated .npz artifact.
        (
            zipfile.BadZipFile("File is not a zip file"),
            "raw_plays failed: BadZipFile: File is not a zip file",
        ),
        (ValueError("first line\n  second line\n"), "raw_plays failed: ValueError: first line second line"),
    ],
)
def test_an_exception_inside_an_asset_is_the_last_line(cli_env, monkeypatch, capsys, error, expected):
    """A full disk, a corrupt artifact or any other error raised by asset code: the user's exception,
    unwrapped from Dagster's, on one line with the asset's name."""
    import recsys_assets.assets.ingest as ingest

    def fail(conn, data, synthetic, threads, progress=None):
        raise error

    monkeypatch.setattr(ingest, "load_configured_source", fail)
    assert main(["refresh"]) == 1
    last = _last_line(capsys)
    assert last.startswith(f"recsys: {expected} (run ")


@pytest.mark.slow
def test_verbose_keeps_the_tracebacks_and_still_ends_with_the_cause(cli_env, monkeypatch, capsys):
    import recsys_assets.assets.ingest as ingest

    def fail(conn, data, synthetic, threads, progress=None):
        raise ValueError("the cause")

    monkeypatch.setattr(ingest, "load_configured_source", fail)
    assert main(["--verbose", "refresh"]) == 1
    err = capsys.readouterr().err
    assert "Stack Trace" in err and "Traceback" in err  # Dagster's step failure, then the command's
    assert err.strip().splitlines()[-1].startswith("recsys: raw_plays failed: ValueError: the cause")
    assert main(["refresh", "-v"]) == 1  # also accepted after the command
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("command", ["status", "refresh"])
def test_a_full_instance_database_is_one_line(cli_env, monkeypatch, capsys, command):
    """The Dagster instance's SQLite refuses writes (a full disk): one line naming the instance."""
    import dagster as dg
    import sqlalchemy.exc
    from dagster._core.storage.event_log.sqlite.sqlite_event_log import SqliteEventLogStorage
    from dagster._core.storage.runs.sqlite.sqlite_run_storage import SqliteRunStorage

    def disk_full(self, *args, **kwargs):
        raise sqlalchemy.exc.OperationalError(
            "INSERT INTO event_logs ...", {}, sqlite3.OperationalError("database or disk is full")
        )

    if command == "status":
        # status only reads an instance that exists (it writes nothing): make one, then fail its reads.
        for var in ("RECSYS_HOME", "DAGSTER_HOME"):
            Path(os.environ[var]).mkdir(parents=True, exist_ok=True)
        with dg.DagsterInstance.get():
            pass
        monkeypatch.setattr(SqliteRunStorage, "get_runs", disk_full)
    else:
        monkeypatch.setattr(SqliteEventLogStorage, "store_event", disk_full)
    assert main([command]) == 1
    last = _last_line(capsys)
    assert last.startswith("recsys: the Dagster instance's storage under ")
    assert "dagster failed: OperationalError: database or disk is full" in last
    assert "free disk space" in last


def test_a_settings_file_that_is_not_utf8_is_named(cli_env, capsys):
    config = cli_env("")
    config.write_bytes(b'[data]\nsource = "synth\xe9tic"\n')
    assert main(["status"]) == 1
    last = _last_line(capsys)
    assert str(config) in last and "UTF-8" in last and "line 2" in last


def test_any_unexpected_error_is_one_line_and_verbose_shows_its_traceback(cli_env, monkeypatch, capsys):
    import recsys_assets.cli as cli

    def boom():
        raise RuntimeError("something broke\nwhile doing this")

    monkeypatch.setattr(cli, "_graph", boom)
    assert main(["refresh"]) == 1
    assert _last_line(capsys) == "recsys: RuntimeError: something broke while doing this"
    assert main(["--verbose", "refresh"]) == 1
    err = capsys.readouterr().err
    assert (
        "Traceback" in err
        and err.strip().splitlines()[-1] == "recsys: RuntimeError: something broke while doing this"
    )


def test_ctrl_c_is_one_line_and_exit_status_130(cli_env, monkeypatch, capsys):
    import recsys_assets.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_graph", interrupted)
    try:
        status = main(["refresh"])
    except KeyboardInterrupt:  # escaping, it would stop the whole test session
        pytest.fail("KeyboardInterrupt escaped main()")
    assert status == 130
    assert _last_line(capsys) == "recsys: interrupted"


@pytest.mark.slow
@pytest.mark.parametrize("sql", ["", "-- only a comment"])
def test_a_query_without_a_statement_is_one_line(recsys_home_env, capsys, sql):
    status = main(["query", sql])
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == (status == 1)
    assert status == 0 or err.startswith("recsys: ")


@pytest.mark.slow
def test_n_above_what_is_stored_says_so(recsys_home_env, capsys):
    """The tiny fixture stores 10 related artists per artist and 10 recommendations per user."""
    from recsys_assets.catalog import Catalog

    with Catalog(recsys_home_env).connect() as conn:
        name = conn.execute(
            "SELECT a.name FROM related_artists r JOIN artists a USING (artist_id) WHERE model = 'als' LIMIT 1"
        ).fetchone()[0]
        user = conn.execute("SELECT u.user_key FROM users u ORDER BY user_id LIMIT 1").fetchone()[0]
    assert main(["related", name, "-n", "15"]) == 0
    out, err = capsys.readouterr()
    assert len(out.strip().splitlines()) == 1 + 10  # header and every stored row
    assert "only 10 related artists per artist are stored" in err and "[related] n = 15" in err
    assert main(["related", name, "-n", "10"]) == 0
    assert "note" not in capsys.readouterr().err
    assert main(["recommend", user, "-n", "11", "--model", "lsa"]) == 0
    err = capsys.readouterr().err
    assert "only 10 recommendations per user are stored (model lsa)" in err and "[recommend] n = 11" in err
    assert main(["recommend", user, "-n", "3"]) == 0
    assert capsys.readouterr().err == ""
