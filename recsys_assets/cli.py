"""The ``recsys`` command: refresh the graph, open the UI, and query the published outputs.

Queries read the published catalog (the current generation of Parquet snapshots under
``$RECSYS_HOME/published``), so they work while a materialization is running; ``recsys query`` runs
only SELECT statements on a connection that can read those snapshots and nothing else.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import sys
import warnings
from pathlib import Path

import duckdb

from recsys_assets.catalog import Catalog, QueryRefusedError, read_only_statements
from recsys_assets.core.download import DownloadError
from recsys_assets.core.loaders import LoadError
from recsys_assets.settings import HOME_ENV, SETTINGS_ENV, SettingsError, recsys_home, settings_path
from recsys_assets.sql import read_sql
from recsys_assets.storage import ArtifactError


class CliError(Exception):
    """A user-facing error: printed as one message, exit status 1."""


def _strip_the(name: str) -> str:
    name = " ".join(name.lower().split())
    return name[4:] if name.startswith("the ") else name


def resolve_artist(conn: duckdb.DuckDBPyConnection, name: str) -> str:
    """The catalog's name for ``name``: case-insensitive, tolerant of a leading "The"; among several
    matches (e.g. "Arcade Fire" and "The Arcade Fire") the most listened-to. Unknown names raise
    :class:`CliError` listing close matches."""
    wanted = _strip_the(name)
    match = conn.execute(
        """
        SELECT a.name FROM artists a LEFT JOIN plays p USING (artist_id)
        WHERE regexp_replace(lower(trim(a.name)), '^the\\s+', '') = ?
        GROUP BY a.name ORDER BY count(p.user_id) DESC, a.name LIMIT 1
        """,
        [wanted],
    ).fetchall()
    if match:
        return match[0][0]
    close = conn.execute(
        """
        SELECT name FROM artists WHERE name IS NOT NULL
        ORDER BY jaro_winkler_similarity(regexp_replace(lower(name), '^the\\s+', ''), ?) DESC, name
        LIMIT 5
        """,
        [wanted],
    ).fetchall()
    suggestions = ", ".join(repr(r[0]) for r in close)
    raise CliError(f"no artist named {name!r}. Close matches: {suggestions or 'none'}")


def _print_rows(conn: duckdb.DuckDBPyConnection, sql: str, params: dict | None, empty_message: str) -> None:
    """Run ``sql`` and print the result as an aligned text table."""
    cursor = conn.execute(sql, params) if params else conn.execute(sql)
    if cursor.description is None:
        return
    columns = [d[0] for d in cursor.description]
    rows = cursor.fetchall()
    if not rows:
        print(empty_message)
        return
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)))


def _catalog_connection(*needed: str) -> duckdb.DuckDBPyConnection:
    """A catalog connection that reads the current generation's snapshots and nothing else (see
    :meth:`Catalog.connect`); ``needed`` tables must have been published."""
    catalog = Catalog(recsys_home())
    try:
        conn = catalog.connect()
    except ArtifactError as exc:
        raise CliError(str(exc)) from exc
    # The connection's own views: the generation it reads, even if a publish happened meanwhile.
    views = conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    missing = sorted(set(needed) - {name for (name,) in views})
    if missing:
        conn.close()
        raise CliError(
            f"{', '.join(missing)} not published yet under {catalog.home}: run `recsys refresh` first"
        )
    return conn


def cmd_related(args: argparse.Namespace) -> None:
    with _catalog_connection("artists", "plays", "related_artists") as conn:
        name = resolve_artist(conn, args.name)
        if name.lower() != args.name.lower():
            print(f"(showing {name!r})")
        params = {"name": name, "model": args.model, "n": args.n}
        _print_rows(conn, read_sql("queries/related_by_name.sql"), params, f"no related artists for {name!r}")


def cmd_recommend(args: argparse.Namespace) -> None:
    with _catalog_connection("users", "artists", "recommendations") as conn:
        known = conn.execute("SELECT count(*) FROM users WHERE user_key = ?", [args.user]).fetchone()[0]
        if not known:
            raise CliError(f"no user with key {args.user!r}; user keys are in the users table (user_key)")
        params = {"user": args.user, "model": args.model, "n": args.n}
        sql = read_sql("queries/recommendations_for_user.sql")
        _print_rows(conn, sql, params, f"no recommendations for {args.user!r} in model {args.model!r}")


def cmd_query(args: argparse.Namespace) -> None:
    try:
        read_only_statements(args.sql)
    except QueryRefusedError as exc:
        raise CliError(f"query refused: {exc}") from exc
    except duckdb.Error as exc:
        raise CliError(f"query failed: {_first_line(exc)}") from exc
    with _catalog_connection() as conn:
        try:
            _print_rows(conn, args.sql, None, "(no rows)")
        except duckdb.Error as exc:
            raise CliError(f"query failed: {_first_line(exc)}") from exc


def _first_line(exc: Exception) -> str:
    """DuckDB's message on one line, without the quoted SQL and caret it appends (``LINE 1: ...``)."""
    message = re.split(r"\n\s*LINE \d+:", str(exc), maxsplit=1)[0]
    return " ".join(message.split())


def _dagster_home() -> Path:
    home = Path(os.environ.get("DAGSTER_HOME") or recsys_home() / "dagster")
    home.mkdir(parents=True, exist_ok=True)
    # An empty dagster.yaml = the default local storage, without a warning on every start.
    (home / "dagster.yaml").touch()
    os.environ["DAGSTER_HOME"] = str(home)
    return home


def _graph():
    """The definitions for the settings in force, and the input's current fingerprint (computed here
    with the function the observable source uses, so an unchanged input needs no observation run)."""
    from recsys_assets.assets.ingest import source_fingerprint
    from recsys_assets.definitions import build_definitions
    from recsys_assets.settings import load_settings

    _dagster_home()
    settings = load_settings()
    return build_definitions(settings), {"plays_source": source_fingerprint(settings, recsys_home())}


def cmd_refresh(args: argparse.Namespace) -> None:
    import dagster as dg

    from recsys_assets.refresh import RefreshFailedError, RefreshInProgressError, refresh

    defs, current = _graph()
    with dg.DagsterInstance.get() as instance:
        try:
            result = refresh(
                defs, instance, source_versions=current, lock_path=recsys_home() / "refresh.lock"
            )
        except (RefreshFailedError, RefreshInProgressError) as exc:
            raise CliError(str(exc)) from exc
    if result.waves:
        print(f"materialized {len(result.materialized)} asset(s) in {len(result.waves)} wave(s)")


def cmd_status(args: argparse.Namespace) -> None:
    import dagster as dg

    from recsys_assets.refresh import RefreshFailedError, observe_sources, stale_or_missing

    defs, current = _graph()
    with dg.DagsterInstance.get() as instance:
        try:
            observe_sources(defs, instance, current)
        except RefreshFailedError as exc:
            raise CliError(str(exc)) from exc
        todo = stale_or_missing(defs, instance)
    if not todo:
        print("up to date: nothing to refresh")
    for key, why in todo.items():
        print(f"{key}: {why}")


def cmd_ui(args: argparse.Namespace) -> None:
    home = _dagster_home()
    # dagster dev runs from the repository: pin the home and settings resolved here, so the UI and
    # `recsys refresh` share one instance, one warehouse and one settings file wherever this is started.
    os.environ[HOME_ENV] = str(recsys_home())
    config = settings_path()
    if config is not None:
        os.environ[SETTINGS_ENV] = str(config.resolve())
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    print(f"DAGSTER_HOME={home}; open http://127.0.0.1:{args.port}")
    # `dagster dev` started from a script can ignore SIGINT: restore the default before exec.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(workspace.parent)
    # The dagster executable installed beside this interpreter, so an unactivated venv works too.
    beside = Path(sys.executable).parent / "dagster"
    dagster = str(beside) if beside.exists() else "dagster"
    os.execvp(dagster, [dagster, "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(args.port)])


def cmd_download(args: argparse.Namespace) -> None:
    from recsys_assets.core.download import fetch_lastfm360k

    dest = Path(args.dest) if args.dest else recsys_home() / "downloads"
    path = fetch_lastfm360k(dest)
    print(f'{path}\nset [data] source = "lastfm360k" and path = "{path}" in recsys.toml')


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsys",
        description=f"Music recommender on a Dagster asset graph. Settings: ${SETTINGS_ENV} or ./recsys.toml; "
        f"data under ${HOME_ENV} (default ./recsys_home).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("refresh", help="materialize stale and missing assets (nothing when up to date)")
    p.set_defaults(func=cmd_refresh)
    p = sub.add_parser("status", help="list the assets a refresh would run, and why")
    p.set_defaults(func=cmd_status)
    p = sub.add_parser("related", help="artists related to an artist")
    p.add_argument("name")
    p.add_argument("--model", choices=["als", "lsa"], default="als")
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_related)
    p = sub.add_parser("recommend", help="recommendations for a user (by user key)")
    p.add_argument("user")
    p.add_argument("--model", choices=["als", "lsa"], default="als")
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_recommend)
    p = sub.add_parser("query", help="run read-only SQL against the published tables")
    p.add_argument("sql")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) on 127.0.0.1")
    p.add_argument("--port", type=int, default=3000)
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("download", help="download and unpack the Last.fm 360K dataset")
    p.add_argument("--dest", default=None)
    p.set_defaults(func=cmd_download)
    return parser


def main(argv: list[str] | None = None) -> int:
    # Dagster flags APIs it may change (data versions, observable sources) on every use; they are
    # pinned and tested here, so the warnings would only bury the progress lines.
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    args = build_parser().parse_args(argv)
    if getattr(args, "n", 1) < 1:
        print("recsys: -n must be at least 1", file=sys.stderr)
        return 1
    try:
        args.func(args)
    except (CliError, SettingsError, LoadError, DownloadError) as exc:
        print(f"recsys: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
