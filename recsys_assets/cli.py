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
import traceback
import warnings
from pathlib import Path

import duckdb

from recsys_assets.catalog import Catalog, QueryRefusedError, read_only_statements, vocabulary
from recsys_assets.settings import HOME_ENV, SETTINGS_ENV, recsys_home, settings_path
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
    return resolve_artist_id(conn, name)[1]


def resolve_artist_id(conn: duckdb.DuckDBPyConnection, name: str) -> tuple[int, str]:
    """``(artist_id, catalog name)`` of ``name``, matched as :func:`resolve_artist` says (an unknown
    name is "no item named ..." where the published data is not music, see :func:`vocabulary`)."""
    wanted = _strip_the(name)
    match = conn.execute(
        """
        SELECT a.artist_id, a.name FROM artists a LEFT JOIN plays p USING (artist_id)
        WHERE regexp_replace(lower(trim(a.name)), '^the\\s+', '') = ?
        GROUP BY a.artist_id, a.name ORDER BY count(p.user_id) DESC, a.name LIMIT 1
        """,
        [wanted],
    ).fetchall()
    if match:
        return int(match[0][0]), match[0][1]
    close = conn.execute(
        """
        SELECT name FROM artists WHERE name IS NOT NULL
        ORDER BY jaro_winkler_similarity(regexp_replace(lower(name), '^the\\s+', ''), ?) DESC, name
        LIMIT 5
        """,
        [wanted],
    ).fetchall()
    suggestions = ", ".join(repr(r[0]) for r in close)
    raise CliError(f"no {vocabulary(conn)['item']} named {name!r}. Close matches: {suggestions or 'none'}")


def _print_rows(
    conn: duckdb.DuckDBPyConnection,
    sql: str,
    params: dict | None,
    empty_message: str,
    words: dict[str, str] | None = None,
) -> None:
    """Run ``sql`` and print the result as an aligned text table; with ``words`` (:func:`vocabulary`),
    the example queries' music column names (``artist``, ``related_artist``) say the data's word."""
    cursor = conn.execute(sql, params) if params else conn.execute(sql)
    if cursor.description is None:
        return
    columns = [d[0] for d in cursor.description]
    if words is not None:
        columns = [re.sub(r"(?<![a-z])artist(?![a-z])", words["item"], c) for c in columns]
    _print_table(columns, cursor.fetchall(), empty_message)


def _print_table(columns: list[str], rows: list, empty_message: str) -> None:
    """Print ``rows`` under ``columns`` as an aligned text table (floats with 4 decimals)."""
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


def _published_words() -> dict[str, str]:
    """:func:`vocabulary` of the published data, for messages given before a command reads it; the
    music words when nothing is published yet."""
    try:
        with Catalog(recsys_home()).connect() as conn:
            return vocabulary(conn)
    except ArtifactError:
        with duckdb.connect(":memory:") as empty:
            return vocabulary(empty)


def _note_if_capped(conn: duckdb.DuckDBPyConnection, table: str, args: argparse.Namespace, per: str) -> None:
    """Tell the user (stderr) when ``-n`` asks for more rows than ``table`` stores per ``per`` ("user", or
    the data's word for an item) for the model: the refresh keeps only ``[<table's section>] n``, so the
    answer is silently shorter otherwise."""
    stored = conn.execute(f"SELECT max(rank) FROM {table} WHERE model = ?", [args.model]).fetchone()[0]
    if stored is not None and args.n > stored:
        words = vocabulary(conn)
        section, what = {
            "related_artists": ("related", f"related {words['items']}"),
            "recommendations": ("recommend", "recommendations"),
        }[table]
        print(
            f"recsys: note: only {stored} {what} per {per} are stored (model {args.model}); "
            f"for {args.n}, set [{section}] n = {args.n} in the settings file and run `recsys refresh`",
            file=sys.stderr,
        )


def _choose_model(args: argparse.Namespace) -> None:
    """Resolve ``--model`` against ``[models] enabled`` of the settings in force (default: the first)."""
    from recsys_assets.settings import load_settings

    enabled = load_settings().models.enabled
    if args.model is None:
        args.model = enabled[0]
    elif args.model not in enabled:
        raise CliError(
            f"--model {args.model}: not an enabled model; enabled models: {', '.join(enabled)} "
            "([models] enabled in the settings file)"
        )


def cmd_related(args: argparse.Namespace) -> None:
    _choose_model(args)
    with _catalog_connection("artists", "plays", "related_artists") as conn:
        name = resolve_artist(conn, args.name)
        if name.lower() != args.name.lower():
            print(f"(showing {name!r})")
        params = {"name": name, "model": args.model, "n": args.n}
        words = vocabulary(conn)
        empty = f"no related {words['items']} for {name!r}"
        _print_rows(conn, read_sql("queries/related_by_name.sql"), params, empty, words)
        _note_if_capped(conn, "related_artists", args, words["item"])


def _published(conn: duckdb.DuckDBPyConnection, model_name: str):
    """The published state of an enabled model (:func:`recsys_assets.pipeline.live.published_model`)."""
    from recsys_assets.core.models import get_model
    from recsys_assets.pipeline.live import published_model
    from recsys_assets.settings import load_settings

    try:
        return published_model(conn, get_model(model_name), load_settings())
    except LookupError as exc:
        raise CliError(exc.args[0]) from None


def _names(conn: duckdb.DuckDBPyConnection, ids: list[int]) -> dict[int, str]:
    found = conn.execute("SELECT artist_id, name FROM artists WHERE list_contains(?, artist_id)", [ids])
    return dict(found.fetchall())


def cmd_like(args: argparse.Namespace) -> None:
    from recsys_assets.core.foldin import FoldInError, like

    _choose_model(args)
    with _catalog_connection("artists", "plays", "artist_factors") as conn:
        published = _published(conn, args.model)

        def resolve(name: str) -> int:
            try:
                return resolve_artist_id(conn, name)[0]
            except CliError as exc:
                raise LookupError(str(exc)) from None

        words = vocabulary(conn)
        try:
            found = like(args.expression, resolve, published.item_factors, n=args.n, noun=words["item"])
        except FoldInError as exc:
            raise CliError(str(exc)) from None
        names = _names(conn, [i for i, _ in found])
        rows = [(rank, names.get(i, f"#{i}"), score) for rank, (i, score) in enumerate(found, start=1)]
        _print_table(["rank", words["item"], "cosine"], rows, f"no {words['items']}")


def _recommend_likes(args: argparse.Namespace) -> None:
    """``recommend --likes``: a new listener folded in against the published item factors."""
    import numpy as np

    from recsys_assets.core.models import get_model

    with _catalog_connection("artists", "plays", "artist_factors") as conn:
        words = vocabulary(conn)
        if get_model(args.model).fold_in is None:
            raise CliError(
                f"--likes: model {args.model!r} has no fold-in for a new {words['user']}; use --model als "
                "(or a model that defines Model.fold_in)"
            )
        liked = [resolve_artist_id(conn, name.strip()) for name in args.likes.split(",") if name.strip()]
        if not liked:
            raise CliError(f"--likes: give at least one {words['item']} name (comma-separated)")
        published = _published(conn, args.model)
        scores = _fold_in(published, [i for i, _ in liked])
        top = [int(i) for i in np.argsort(-scores, kind="stable")[: args.n] if np.isfinite(scores[i])]
        names = _names(conn, top)
        rows = [(rank, names.get(i, f"#{i}"), float(scores[i])) for rank, i in enumerate(top, start=1)]
        print(f"(a new {words['user']} who likes {', '.join(name for _, name in liked)})")
        _print_table(["rank", words["item"], "score"], rows, "no recommendations")


def _fold_in(published, liked: list[int]):
    from recsys_assets.core.foldin import FoldInError
    from recsys_assets.pipeline.live import fold_in_scores

    try:
        return fold_in_scores(published, liked)
    except FoldInError as exc:
        raise CliError(str(exc)) from None


def cmd_explain(args: argparse.Namespace) -> None:
    from recsys_assets.core.foldin import FoldInError, explain_als

    _choose_model(args)
    if args.model != "als":
        raise CliError(
            f"explain: only ALS recommendations can be explained (--model als), not {args.model!r}"
        )
    with _catalog_connection("users", "artists", "plays", "artist_factors") as conn:
        found = conn.execute("SELECT user_id FROM users WHERE user_key = ?", [args.user]).fetchall()
        if not found:
            raise CliError(f"no user with key {args.user!r}; user keys are in the users table (user_key)")
        item, name = resolve_artist_id(conn, args.artist)
        published = _published(conn, "als")
        row = published.matrix[found[0][0]]
        try:
            why = explain_als(
                row, item, published.item_factors, published.section.alpha, published.section.regularization
            )
        except FoldInError as exc:
            raise CliError(f"{exc} (user {args.user!r})") from None
        shown = why.contributions[: args.n]
        names = _names(conn, [j for j, _ in shown])
        words = vocabulary(conn)
        print(
            f"score of {name!r} for user {args.user!r}: {why.score:.4f}; the user's {words['items']} that drove it:"
        )
        rows = [
            (rank, names.get(j, f"#{j}"), value, value / why.score if why.score else float("nan"))
            for rank, (j, value) in enumerate(shown, start=1)
        ]
        _print_table(["rank", words["item"], "contribution", "share"], rows, "no contributions")


def cmd_recommend(args: argparse.Namespace) -> None:
    _choose_model(args)
    if args.likes is not None:
        if args.user is not None:
            raise CliError("recommend: give a user key or --likes, not both")
        _recommend_likes(args)
        return
    if args.user is None:
        words = _published_words()
        example = "Artist,Artist,..." if words["item"] == "artist" else "Name,Name,..."
        raise CliError(f'recommend: give a user key, or --likes "{example}" for a new {words["user"]}')
    with _catalog_connection("users", "artists", "recommendations") as conn:
        known = conn.execute("SELECT count(*) FROM users WHERE user_key = ?", [args.user]).fetchone()[0]
        if not known:
            raise CliError(f"no user with key {args.user!r}; user keys are in the users table (user_key)")
        params = {"user": args.user, "model": args.model, "n": args.n}
        sql = read_sql("queries/recommendations_for_user.sql")
        empty = f"no recommendations for {args.user!r} in model {args.model!r}"
        _print_rows(conn, sql, params, empty, vocabulary(conn))
        _note_if_capped(conn, "recommendations", args, "user")


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
    from recsys_assets.definitions import build_definitions
    from recsys_assets.pipeline.ingest import source_fingerprint
    from recsys_assets.settings import load_settings

    _dagster_home()
    settings = load_settings()  # an unreadable or non-UTF-8 file is a one-line SettingsError
    current = source_fingerprint(settings.data, settings.synthetic, recsys_home())
    return build_definitions(settings), {"plays_source": current}


def cmd_refresh(args: argparse.Namespace) -> None:
    import dagster as dg

    from recsys_assets.refresh import RefreshFailedError, RefreshInProgressError, UnknownAssetError, refresh

    defs, current = _graph()
    with dg.DagsterInstance.get() as instance:
        try:
            result = refresh(
                defs,
                instance,
                source_versions=current,
                lock_path=recsys_home() / "refresh.lock",
                show_errors=args.verbose,
                force=args.force or (),
            )
        except (RefreshFailedError, RefreshInProgressError, UnknownAssetError) as exc:
            raise CliError(str(exc)) from exc
    if result.waves:
        print(f"materialized {len(result.materialized)} asset(s) in {len(result.waves)} wave(s)")


def _run_line(run, alive: bool) -> str:
    started = f"run {run.run_id[:8]} ({run.job_name}, {run.status.value})"
    if alive:
        return f"{started} is in progress: a refresh now would not start"
    pid = run.tags.get("recsys/pid", "?")
    return f"{started} lost its process (pid {pid} is gone: killed?): the next refresh marks it failed"


def cmd_status(args: argparse.Namespace) -> None:
    """Print the whole plan of a refresh, writing nothing: not to the Dagster instance, not under a
    ``$RECSYS_HOME`` that does not exist yet."""
    import dagster as dg

    from recsys_assets.definitions import build_definitions
    from recsys_assets.pipeline.ingest import source_fingerprint
    from recsys_assets.refresh import status
    from recsys_assets.settings import load_settings

    home = recsys_home()
    settings = load_settings()
    defs = build_definitions(settings)
    dagster_home = Path(os.environ.get("DAGSTER_HOME") or home / "dagster")
    # Opening a local instance creates its databases: only open one that has them (or storage configured).
    config = dagster_home / "dagster.yaml"
    materialized = home.is_dir() and (
        (dagster_home / "history").is_dir() or (config.is_file() and config.stat().st_size > 0)
    )
    if not materialized:
        print(f"nothing materialized yet under {home}: a refresh would run every asset")
        instance_context = dg.DagsterInstance.ephemeral()
        current = None
    else:
        os.environ["DAGSTER_HOME"] = str(dagster_home)  # this process only; nothing is written
        instance_context = dg.DagsterInstance.get()
        current = {"plays_source": source_fingerprint(settings.data, settings.synthetic, home)}
    with instance_context as instance:
        report = status(defs, instance, current)
    lines = [_run_line(run, True) for run in report.running]
    lines += [_run_line(run, False) for run in report.dead]
    lines += [f"note: {note}" for note in report.notes]
    for number, wave in enumerate(report.waves, start=1):
        lines += [f"wave {number}: {key} <- {why}" for key, why in wave.items()]
    count = sum(len(wave) for wave in report.waves)
    if count:
        lines.append(f"a refresh would run {count} asset(s) in {len(report.waves)} wave(s) (at most)")
    else:
        lines.append("up to date: nothing to refresh")
    print("\n".join(lines))


def cmd_ui(args: argparse.Namespace) -> None:
    from recsys_assets.artifact_server import ArtifactServerError, serve_in_background
    from recsys_assets.settings import load_settings
    from recsys_assets.storage import ARTIFACT_DIR

    ui = load_settings().ui
    port = args.port if args.port is not None else ui.port
    if port == ui.artifacts_port:
        raise CliError(f"--port {port}: the report pages use it ([ui] artifacts_port); choose another")
    home = _dagster_home()
    # dagster dev runs from the repository: pin the home and settings resolved here, so the UI and
    # `recsys refresh` share one instance, one warehouse and one settings file wherever this is started.
    os.environ[HOME_ENV] = str(recsys_home())
    config = settings_path()
    if config is not None:
        os.environ[SETTINGS_ENV] = str(config.resolve())
    workspace = Path(__file__).resolve().parent.parent / "workspace.yaml"
    # The report pages the asset pages link to, over http (a browser does not follow file:// links
    # from the UI); the server ends with this process, which becomes dagster dev below.
    try:
        serve_in_background(recsys_home() / ARTIFACT_DIR, ui.artifacts_port)
    except ArtifactServerError as exc:
        raise CliError(str(exc)) from None
    print(
        f"DAGSTER_HOME={home}; open http://127.0.0.1:{port} (report pages: http://127.0.0.1:{ui.artifacts_port}/)"
    )
    # Dagster 1.13 marks `dagster dev` superseded by `dg dev` (package dagster-dg-cli, which wants a `dg`
    # project layout); this project stays on `dagster dev -w workspace.yaml`: hide that one warning.
    hide = "ignore:Function `dev_command` is superseded"
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), hide]))
    # `dagster dev` started from a script can ignore SIGINT: restore the default before exec.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    os.chdir(workspace.parent)
    # The dagster executable installed beside this interpreter, so an unactivated venv works too.
    beside = Path(sys.executable).parent / "dagster"
    dagster = str(beside) if beside.exists() else "dagster"
    os.execvp(dagster, [dagster, "dev", "-w", str(workspace), "-h", "127.0.0.1", "-p", str(port)])


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
    p.add_argument(
        "--force",
        nargs="+",
        metavar="ASSET",
        help="re-materialize these assets even if up to date (then whatever turns stale after them)",
    )
    p.set_defaults(func=cmd_refresh)
    p = sub.add_parser("status", help="the whole plan of a refresh, and why (writes nothing)")
    p.set_defaults(func=cmd_status)
    model_help = "an enabled model ([models] enabled; default: the first)"
    p = sub.add_parser("related", help="artists related to an artist (items to an item, for a ratings file)")
    p.add_argument("name")
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_related)
    p = sub.add_parser(
        "recommend", help="recommendations for a user (by user key) or a new listener (--likes)"
    )
    p.add_argument("user", nargs="?", default=None)
    p.add_argument(
        "--likes",
        default=None,
        metavar="ARTISTS",
        help='comma-separated artists (items) a new listener likes, e.g. "Radiohead,Muse,Portishead" (folded in '
        "against the published factors, no retraining)",
    )
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_recommend)
    p = sub.add_parser(
        "like", help='artists (items) nearest to a sum of them, e.g. "Radiohead + Daft Punk - Coldplay"'
    )
    p.add_argument("expression", help='terms joined by + and -, optional weights: "0.5*Muse + Björk"')
    p.add_argument("--model", default=None, help=model_help)
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_like)
    p = sub.add_parser("explain", help="which of a user's artists (items) drove an ALS recommendation")
    p.add_argument("user")
    p.add_argument("artist")
    p.add_argument("--model", default=None, help="als (the only model with explanations)")
    p.add_argument("-n", type=int, default=10)
    p.set_defaults(func=cmd_explain)
    p = sub.add_parser("query", help="run read-only SQL against the published tables")
    p.add_argument("sql")
    p.set_defaults(func=cmd_query)
    p = sub.add_parser("ui", help="start the Dagster UI (dagster dev) and the report pages on 127.0.0.1")
    p.add_argument("--port", type=int, default=None, help="the UI's port (default: [ui] port, 3000)")
    p.set_defaults(func=cmd_ui)
    p = sub.add_parser("download", help="download and unpack the Last.fm 360K dataset")
    p.add_argument("--dest", default=None)
    p.set_defaults(func=cmd_download)
    verbose_help = "on failure, print tracebacks (Dagster's and the command's) before the one-line cause"
    parser.add_argument("-v", "--verbose", action="store_true", help=verbose_help)
    for command in sub.choices.values():  # also accepted after the command: `recsys refresh -v`
        command.add_argument(
            "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help
        )
    return parser


def error_message(exc: BaseException) -> str:
    """The one line ``recsys`` prints for an exception that ended a command.

    Dagster's wrappers are unwrapped to the exception they were raised from. This project's own
    exceptions (``CliError``, ``SettingsError``, ``LoadError``, the refresh's failure summary, ...) are
    written for the user and print their message alone; anything else prints as
    ``"ClassName: message"``; an error of the Dagster instance's SQLite storage names the instance
    folder (a full disk shows up there first). The message's lines are joined into one.
    """
    while type(exc).__module__.startswith("dagster") and exc.__cause__ is not None:
        exc = exc.__cause__
    name = type(exc).__name__
    if type(exc).__module__.split(".")[0] == "recsys_assets":
        text = str(exc)
    elif type(exc).__module__.startswith("sqlalchemy"):
        # SQLAlchemy's text adds the SQL statement and a link; the driver's error is the cause.
        cause = getattr(exc, "orig", None) or exc
        text = (
            f"the Dagster instance's storage under {os.environ.get('DAGSTER_HOME', '$DAGSTER_HOME')} "
            f"failed: {type(cause).__name__}: {cause}"
        )
        if "full" in str(cause).lower():
            text += " (free disk space there, then run the command again)"
    else:
        text = f"{name}: {exc}" if str(exc) else name
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


def main(argv: list[str] | None = None) -> int:
    """Run one ``recsys`` command. Any exception ends it with one line on stderr, ``recsys: <cause>``,
    and exit status 1 (the traceback first with ``--verbose``); Ctrl-C ends it with exit status 130."""
    # Dagster flags APIs it may change (data versions, observable sources) on every use; they are
    # pinned and tested here, so the warnings would only bury the progress lines.
    warnings.filterwarnings("ignore", message=".*is currently in (beta|preview).*")
    args = build_parser().parse_args(argv)
    if getattr(args, "n", 1) < 1:
        print("recsys: -n must be at least 1", file=sys.stderr)
        return 1
    try:
        args.func(args)
    except KeyboardInterrupt:
        print("recsys: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader of stdout went away (`recsys query ... | head`): nothing left to say to it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"recsys: {error_message(exc)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
