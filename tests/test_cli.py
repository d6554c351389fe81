"""The `recsys` command against a materialized home: answers, errors, read-only access."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from recsys_assets.catalog import Catalog
from recsys_assets.cli import main
from recsys_assets.sql import example_queries

pytestmark = pytest.mark.slow


def _popular_artist(home) -> str:
    with Catalog(home).connect() as conn:
        return conn.execute(
            "SELECT a.name FROM plays JOIN artists a USING (artist_id) GROUP BY a.name ORDER BY count(*) DESC LIMIT 1"
        ).fetchone()[0]


def test_related_by_name_is_case_and_the_insensitive(recsys_home_env, capsys):
    name = _popular_artist(recsys_home_env)
    assert main(["related", name, "-n", "5"]) == 0
    exact = capsys.readouterr().out
    assert len(exact.strip().splitlines()) == 6  # header + 5 rows
    bare = name[4:] if name.lower().startswith("the ") else name
    assert main(["related", f"the {bare.upper()}", "-n", "5", "--model", "als"]) == 0
    assert capsys.readouterr().out.splitlines()[-5:] == exact.strip().splitlines()[-5:]


def test_unknown_artist_gets_close_matches_not_a_traceback(recsys_home_env, capsys):
    name = _popular_artist(recsys_home_env)
    assert main(["related", name[:-1] + "zz"]) == 1
    err = capsys.readouterr().err
    assert "no artist named" in err and "Close matches" in err and repr(name) in err
    assert "Traceback" not in err


def test_recommend_and_unknown_user(recsys_home_env, capsys):
    with Catalog(recsys_home_env).connect() as conn:
        user = conn.execute("SELECT user_key FROM users ORDER BY user_id LIMIT 1").fetchone()[0]
    assert main(["recommend", user, "-n", "3"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 4
    assert main(["recommend", "no-such-user"]) == 1
    assert "no user with key 'no-such-user'" in capsys.readouterr().err


def test_query_is_read_only(recsys_home_env, capsys):
    assert main(["query", "SELECT count(*) AS n FROM artists"]) == 0
    assert capsys.readouterr().out.split() == ["n", "500"]
    assert main(["query", "DROP VIEW artists"]) == 1
    assert "read-only" in capsys.readouterr().err.lower()
    assert main(["query", "SELECT count(*) FROM artists"]) == 0


def test_no_outputs_yet_is_a_clear_message(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    assert main(["related", "Anyone"]) == 1
    assert "recsys refresh" in capsys.readouterr().err


def test_every_example_query_runs(recsys_home_env):
    params = {"name": _popular_artist(recsys_home_env), "model": "als", "n": 5, "user": "0"}
    with Catalog(recsys_home_env).connect() as conn:
        for name, sql in example_queries().items():
            wanted = {p: v for p, v in params.items() if f"${p}" in sql}
            rows = conn.sql(sql, params=wanted).fetchall() if wanted else conn.sql(sql).fetchall()
            assert rows or name == "rejects_summary", name


def test_readers_are_never_blocked_nor_see_half_a_table(recsys_home_env):
    """A writer process holds the warehouse (as a running materialization does) and republishes a table
    many times; a reader meanwhile queries the catalog and always sees a whole snapshot."""
    home = recsys_home_env
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import duckdb, sys
                from recsys_assets.catalog import Catalog
                conn = duckdb.connect({str(home / "warehouse.duckdb")!r})
                print("locked", flush=True)
                for i in range(40):
                    n = 1000 if i % 2 else 3000
                    conn.execute(f"CREATE OR REPLACE TABLE churn AS SELECT range AS x FROM range({{n}})")
                    Catalog({str(home)!r}).publish(conn, ["churn"])
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert writer.stdout.readline().strip() == "locked"
    seen = []
    deadline = time.time() + 60
    while writer.poll() is None and time.time() < deadline:
        try:
            with Catalog(home).connect() as conn:
                seen.append(conn.execute("SELECT count(*) FROM churn").fetchone()[0])
        except Exception as exc:  # the view may not exist before the first publish
            assert "churn" in str(exc), exc
    assert writer.wait(timeout=60) == 0
    assert seen and set(seen) <= {1000, 3000}


@pytest.fixture
def ratings_home(materialized, tmp_path, monkeypatch):
    """The session's published tables republished as the `triples` source would publish them (its
    load_log names the source): the CLI then speaks of items. RECSYS_HOME points at it."""
    import duckdb

    _, home, *_ = materialized
    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    tables = []
    for snapshot in sorted(Catalog(home).current_generation().glob("*.parquet")):
        warehouse.execute(f"CREATE TABLE {snapshot.stem} AS SELECT * FROM read_parquet('{snapshot}')")
        tables.append(snapshot.stem)
    warehouse.execute("UPDATE load_log SET source = 'triples'")
    Catalog(tmp_path / "home").publish(warehouse, tables)
    warehouse.close()
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("RECSYS_CONFIG", raising=False)
    return tmp_path / "home"


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_the_cli_says_item_where_the_source_is_a_ratings_file(ratings_home, capsys):
    name = _popular_artist(ratings_home)
    with Catalog(ratings_home).connect() as conn:
        user = conn.execute("SELECT user_key FROM users ORDER BY user_id LIMIT 1").fetchone()[0]
        other = conn.execute("SELECT name FROM artists WHERE name <> ? LIMIT 1", [name]).fetchone()[0]
    status, out, err = _run(capsys, "related", name, "-n", "15")
    assert status == 0 and out.split()[:3] == ["rank", "related_item", "score"]
    assert "only 10 related items per item are stored" in err
    status, out, err = _run(capsys, "related", name[:-1] + "zz")
    assert status == 1 and "no item named" in err
    status, out, err = _run(capsys, "recommend", user, "-n", "15")
    assert status == 0 and out.split()[:3] == ["rank", "item", "score"]
    assert "only 10 recommendations per user are stored" in err
    status, out, _ = _run(capsys, "recommend", "--likes", f"{name},{other}", "-n", "3")
    assert status == 0 and out.startswith(f"(a new user who likes {name}, {other})")
    assert out.splitlines()[1].split() == ["rank", "item", "score"]
    status, _, err = _run(capsys, "recommend")
    assert status == 1 and "for a new user" in err and "Artist" not in err
    status, out, _ = _run(capsys, "like", f"{name} + {other}", "-n", "3")
    assert status == 0 and out.split()[:3] == ["rank", "item", "cosine"]
    status, _, err = _run(capsys, "like", f"{name} + + {other}")
    assert status == 1 and "operator with no item before it" in err
    status, out, _ = _run(capsys, "explain", user, name, "-n", "3")
    assert status == 0 and "the user's items that drove it" in out
    assert out.splitlines()[1].split() == ["rank", "item", "contribution", "share"]


def test_the_cli_keeps_the_music_words_for_music_sources(recsys_home_env, capsys):
    name = _popular_artist(recsys_home_env)
    with Catalog(recsys_home_env).connect() as conn:
        user = conn.execute("SELECT user_key FROM users ORDER BY user_id LIMIT 1").fetchone()[0]
    status, out, err = _run(capsys, "related", name, "-n", "15")
    assert status == 0 and out.split()[:3] == ["rank", "related_artist", "score"]
    assert "only 10 related artists per artist are stored" in err
    status, out, _ = _run(capsys, "recommend", "--likes", name, "-n", "3")
    assert status == 0 and out.startswith(f"(a new listener who likes {name})")
    assert out.splitlines()[1].split() == ["rank", "artist", "score"]
    status, _, err = _run(capsys, "recommend")
    assert status == 1 and '--likes "Artist,Artist,..." for a new listener' in err
    status, out, _ = _run(capsys, "explain", user, name, "-n", "3")
    assert "the user's artists that drove it" in out


def test_artists_differing_only_in_case_are_not_mixed(tmp_path, monkeypatch, capsys):
    """Last.fm keys artists by the name as written: "Foo" and "foo" are two artists. `related Foo` answers
    for one of them only, and never lists the other as related to itself by accident of the lookup."""
    import duckdb

    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.execute(
        "CREATE TABLE artists AS SELECT * FROM (VALUES (0, 'Foo'), (1, 'foo'), (2, 'Bar'), (3, 'Baz')) v(artist_id, name)"
    )
    warehouse.execute(
        "CREATE TABLE plays AS SELECT * FROM (VALUES (0, 0), (1, 0), (2, 1)) v(user_id, artist_id)"
    )
    warehouse.execute(
        """CREATE TABLE related_artists AS SELECT * FROM (VALUES
           ('als', 0, 1, 2, 0.9), ('als', 0, 2, 3, 0.8), ('als', 1, 1, 0, 0.99), ('als', 1, 2, 3, 0.7))
           v(model, artist_id, rank, related_id, score)"""
    )
    Catalog(tmp_path).publish(warehouse, ["artists", "plays", "related_artists"])
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    assert main(["related", "FOO", "-n", "5"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines[1:]] == ["Bar", "Baz"]  # the most-played "Foo" only


def test_missing_output_tables_are_a_clear_message(tmp_path, monkeypatch, capsys):
    import duckdb

    warehouse = duckdb.connect(str(tmp_path / "w.duckdb"))
    warehouse.execute("CREATE TABLE artists AS SELECT 0 AS artist_id, 'Foo' AS name")
    Catalog(tmp_path).publish(warehouse, ["artists"])
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path))
    assert main(["related", "Foo"]) == 1
    err = capsys.readouterr().err
    assert "not published yet" in err and "recsys refresh" in err and "Traceback" not in err


def test_refresh_with_a_missing_input_file_names_it(tmp_path, monkeypatch, capsys):
    config = tmp_path / "recsys.toml"
    config.write_text('[data]\nsource = "lastfm360k"\npath = "nowhere.tsv"\n')
    monkeypatch.setenv("RECSYS_CONFIG", str(config))
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["refresh"]) == 1
    err = capsys.readouterr().err
    assert "nowhere.tsv" in err and "does not exist" in err and "Traceback" not in err


def test_status_lists_what_a_refresh_would_run(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("RECSYS_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSYS_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "wave 1: raw_plays <- never materialized" in lines
    assert "wave 1: published_catalog <- never materialized" in lines
    assert len([line for line in lines if line.startswith("wave 1: ")]) == 15  # every materializable asset
