"""Staging and publishing: checks on a scan's counts, the TEMP key tables that ``sql/load_finish.sql``
turns into ids, the plays (duplicate pairs summed), and the one transaction that replaces the raw
tables and logs the load."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.core.loaders.scanner import _Scan
from recsys_assets.core.sparse import canonical_csr
from recsys_assets.sql import read_sql

# The valid lines of a load: (user code, artist code, plays) arrays, codes into the staged key tables.
_Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]


class LoadError(ValueError):
    """A source could not be loaded; the message names the file, where, and what to do."""


@dataclass(frozen=True)
class LoadReport:
    """What one load did. ``lines_read == rows_loaded + rows_rejected``; ``rows_below_min_value`` of the
    loaded rows have a value below ``[data] min_value`` and are left out of ``plays`` (valid lines, not
    positives: not rejects); ``n_plays`` is the number of (user, artist) rows after summing the duplicates
    of the other rows, so ``duplicates_merged == rows_loaded - rows_below_min_value - n_plays``.
    ``extra`` holds source-specific counts (HetRec tags, item names)."""

    source_file: str
    lines_read: int
    rows_loaded: int
    rows_rejected: int
    duplicates_merged: int
    n_users: int
    n_artists: int
    n_plays: int
    reject_reasons: dict[str, int]
    extra: dict[str, int] = field(default_factory=dict)
    rows_below_min_value: int = 0


def raw_schema_sql() -> str:
    """DDL of the raw tables (``sql/raw_schema.sql``)."""
    return read_sql("raw_schema.sql")


# --------------------------------------------------------------------------------------------------
# Staging and publishing


def _require_file(path: Path, what_to_do: str) -> None:
    if path.is_dir():
        raise LoadError(f"{path}: is a folder, not a file; {what_to_do}")
    if not path.is_file():
        raise LoadError(f"{path}: file not found; {what_to_do}")


def _top_reasons(reasons: dict[str, int], first_line: dict[str, int], n: int = 3) -> str:
    top = sorted(reasons.items(), key=lambda kv: -kv[1])[:n]
    return ", ".join(f"{r}: {c} (first at line {first_line[r]})" for r, c in top)


def _check_counts(
    path: Path, lines_read: int, rows_loaded: int, rejects: list[tuple[int, str, str]], max_frac: float
) -> dict[str, int]:
    """Reject counts by reason; raises LoadError when nothing is usable or too much was rejected."""
    reasons: dict[str, int] = {}
    first_line: dict[str, int] = {}
    for line, reason, _ in rejects:
        reasons[reason] = reasons.get(reason, 0) + 1
        first_line.setdefault(reason, line)
    if lines_read == 0:
        raise LoadError(f"{path}: no data lines (the file is empty or has only a header); check the file")
    if rows_loaded == 0:
        raise LoadError(
            f"{path}: none of {lines_read} lines is valid ({_top_reasons(reasons, first_line)}); "
            "check the file's format (delimiter, columns, encoding)"
        )
    rejected = lines_read - rows_loaded
    if rejected > max_frac * lines_read:
        raise LoadError(
            f"{path}: {rejected} of {lines_read} lines rejected ({rejected / lines_read:.2%} > "
            f"max_reject_fraction={max_frac:.2%}); top reasons: {_top_reasons(reasons, first_line)}. "
            "Fix the file or raise max_reject_fraction; the existing tables were left unchanged"
        )
    return reasons


def _compact(codes: np.ndarray, keys: list[str]) -> tuple[np.ndarray, list[str]]:
    """Drop keys no code refers to; renumber codes densely, keeping the keys' order."""
    used = np.zeros(len(keys), dtype=bool)
    used[codes] = True
    if used.all():
        return codes, keys
    new_code = (np.cumsum(used) - 1).astype(np.int32)
    return new_code[codes], [k for k, u in zip(keys, used, strict=True) if u]


def _positives(pairs: _Pairs, min_value: float) -> tuple[_Pairs, int]:
    """The rows of ``pairs`` whose value is at least ``min_value`` (the others say the user did not like
    the item: not a positive), and how many were left out. Applied per row, before duplicates are summed."""
    if min_value <= 0:
        return pairs, 0
    keep = pairs[2] >= min_value
    n_below = int(keep.size - np.count_nonzero(keep))
    if n_below == 0:
        return pairs, 0
    return (pairs[0][keep], pairs[1][keep], pairs[2][keep]), n_below


def _stage_frames(
    conn: duckdb.DuckDBPyConnection,
    ucode: np.ndarray,
    acode: np.ndarray,
    plays: np.ndarray,
    user_keys: list[str],
    artist_keys: list[str],
    artist_names: list[str | None],
    artist_mbid: list[str | None],
    keep_all_keys: bool = False,
    min_value: float = 0.0,
) -> _Pairs:
    """Create the TEMP key tables that ``sql/load_finish.sql`` reads; returns the plays as codes into
    them, for :func:`_publish`: the rows with a value of at least ``min_value`` (see :func:`_positives`).

    Unless ``keep_all_keys``, keys without such a play (a key whose lines were all rejected after it
    was interned, or all below ``min_value``) are dropped and the codes renumbered.
    """
    (ucode, acode, plays), _ = _positives((ucode, acode, plays), min_value)
    if not keep_all_keys:
        ucode, user_keys = _compact(ucode, user_keys)
        used = np.zeros(len(artist_keys), dtype=bool)
        used[acode] = True
        if not used.all():
            acode, artist_keys = _compact(acode, artist_keys)
            artist_names = [n for n, u in zip(artist_names, used, strict=True) if u]
            artist_mbid = [m for m, u in zip(artist_mbid, used, strict=True) if u]
    frames = {
        "_stage_users": pd.DataFrame(
            {
                "ucode": np.arange(len(user_keys), dtype=np.int32),
                "user_key": pd.Series(user_keys, dtype=object),
            }
        ),
        "_stage_artists": pd.DataFrame(
            {
                "acode": np.arange(len(artist_keys), dtype=np.int32),
                "artist_key": pd.Series(artist_keys, dtype=object),
                "name": pd.Series(artist_names, dtype=object),
                "mbid": pd.Series(artist_mbid, dtype=object),
            }
        ),
    }
    for table, frame in frames.items():
        conn.register("_frame", frame)
        try:
            conn.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _frame")
        finally:
            conn.unregister("_frame")
    return ucode, acode, plays.astype(np.float64, copy=False)


@numba.njit(cache=True, nogil=True)
def _sum_pairs(u2id, a2id, ucode, acode, value):  # pragma: no cover - compiled
    """(user_id, artist_id, plays) sorted by (user_id, artist_id), duplicate pairs summed in line
    order. ``u2id``/``a2id`` map codes to ids; two stable counting sorts (artist, then user) order
    the rows in O(rows + users + artists)."""
    n = ucode.shape[0]
    order = np.arange(n)
    for pass_ in range(2):
        ids, codes = (a2id, acode) if pass_ == 0 else (u2id, ucode)
        start = np.zeros(ids.shape[0] + 1, dtype=np.int64)
        for i in range(n):
            start[ids[codes[i]] + 1] += 1
        for k in range(ids.shape[0]):
            start[k + 1] += start[k]
        sorted_ = np.empty(n, dtype=np.int64)
        for j in range(n):
            i = order[j]
            k = ids[codes[i]]
            sorted_[start[k]] = i
            start[k] += 1
        order = sorted_
    uid = np.empty(n, dtype=np.int32)
    aid = np.empty(n, dtype=np.int32)
    plays = np.empty(n, dtype=np.float64)
    m = -1
    for j in range(n):
        i = order[j]
        u, a = u2id[ucode[i]], a2id[acode[i]]
        if m >= 0 and uid[m] == u and aid[m] == a:
            plays[m] += value[i]
        else:
            m += 1
            uid[m], aid[m], plays[m] = u, a, value[i]
    return uid[: m + 1], aid[: m + 1], plays[: m + 1]


def _code_to_id(conn: duckdb.DuckDBPyConnection, sql: str) -> np.ndarray:
    """int32 array id[code] from a query returning (code, id) for every code 0..n-1."""
    cols = conn.execute(sql).fetchnumpy()
    codes, ids = (np.asarray(c) for c in cols.values())
    out = np.empty(codes.shape[0], dtype=np.int32)
    out[codes] = ids
    return out


def _insert_plays(conn: duckdb.DuckDBPyConnection, pairs: _Pairs) -> None:
    """Insert the plays (after ``sql/load_finish.sql`` made the id maps), duplicate pairs summed.

    Summing here rather than with a SQL join and GROUP BY over every line is what keeps DuckDB's
    share of a 17.6M-line load small; the rows go in sorted by (user_id, artist_id)."""
    u2id = _code_to_id(conn, "SELECT ucode, user_id FROM _user_map")
    a2id = _code_to_id(conn, "SELECT acode, artist_id FROM _artist_map")
    ucode, acode, value = pairs
    uid, aid, plays = _sum_pairs(u2id, a2id, ucode, acode, value)
    conn.register("_plays_frame", pd.DataFrame({"user_id": uid, "artist_id": aid, "plays": plays}))
    try:
        conn.execute("INSERT INTO plays SELECT user_id, artist_id, plays FROM _plays_frame")
    finally:
        conn.unregister("_plays_frame")


_TEMP_TABLES = (
    "_stage_plays",
    "_stage_users",
    "_stage_artists",
    "_user_map",
    "_artist_map",
    "_stage_rejects",
    "_stage_tags",
    "_stage_tagged",
    "_parquet_rows",
)


def _drop_temp(conn: duckdb.DuckDBPyConnection) -> None:
    for table in _TEMP_TABLES:
        conn.execute(f"DROP TABLE IF EXISTS temp.{table}")


@contextlib.contextmanager
def _transaction(conn: duckdb.DuckDBPyConnection) -> Iterator[None]:
    conn.execute("BEGIN TRANSACTION")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _publish(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    source_file: Path,
    lines_read: int,
    rows_loaded: int,
    rejects: list[tuple[str, int, str, str]],
    reasons: dict[str, int],
    pairs: _Pairs,
    extra_sql: str | None = None,
) -> LoadReport:
    """Replace the raw tables from the staging tables and ``pairs`` (the valid lines as codes into
    them, those below ``min_value`` already left out) in one transaction, and log the load."""
    positives = int(pairs[0].shape[0])
    if positives == 0:
        raise LoadError(
            f"{source_file}: every one of the {rows_loaded} valid rows has a value below [data] min_value; "
            "lower min_value (0 keeps every row)"
        )
    reject_frame = pd.DataFrame(
        {
            "source_file": pd.Series([r[0] for r in rejects], dtype=object),
            "line_number": np.array([r[1] for r in rejects], dtype=np.int64),
            "reason": pd.Series([r[2] for r in rejects], dtype=object),
            "raw_line": pd.Series([r[3] for r in rejects], dtype=object),
        }
    )
    with _transaction(conn):
        conn.execute(raw_schema_sql())
        conn.execute(read_sql("load_finish.sql"))
        _insert_plays(conn, pairs)
        conn.register("_rejects_frame", reject_frame)
        try:
            conn.execute("INSERT INTO rejects SELECT * FROM _rejects_frame ORDER BY source_file, line_number")
        finally:
            conn.unregister("_rejects_frame")
        if extra_sql is not None:
            conn.execute(extra_sql)
        n_users, n_artists, n_plays = conn.execute(
            "SELECT (SELECT count(*) FROM users), (SELECT count(*) FROM artists), (SELECT count(*) FROM plays)"
        ).fetchone()
        rejected = lines_read - rows_loaded
        conn.execute(
            "INSERT INTO load_log VALUES (current_localtimestamp(), ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [source, str(source_file), lines_read, rows_loaded, rejected, positives - n_plays]
            + [n_users, n_artists, n_plays],
        )
    return LoadReport(
        source_file=str(source_file),
        lines_read=lines_read,
        rows_loaded=rows_loaded,
        rows_rejected=lines_read - rows_loaded,
        duplicates_merged=positives - n_plays,
        n_users=n_users,
        n_artists=n_artists,
        n_plays=n_plays,
        reject_reasons=reasons,
        rows_below_min_value=rows_loaded - positives,
    )


def _load_scan(
    conn: duckdb.DuckDBPyConnection,
    source: str,
    scan: _Scan,
    names: list[str | None],
    max_frac: float,
    min_value: float = 0.0,
    mbids: list[str | None] | None = None,
    side_rejects: list[tuple[str, int, str, str]] = (),
) -> LoadReport:
    """Stage and publish a scan: artist ``names`` and ``mbids`` (default: the scan's) per artist code;
    ``side_rejects`` (source_file, line, reason, raw) of other files read with it join ``rejects``."""
    reasons = _check_counts(scan.path, scan.lines_read, scan.rows_loaded, scan.rejects, max_frac)
    try:
        pairs = _stage_frames(
            conn,
            scan.ucode,
            scan.acode,
            scan.value,
            scan.user_keys,
            scan.artist_keys,
            names,
            scan.artist_mbid if mbids is None else mbids,
            min_value=min_value,
        )
        rejects = [(str(scan.path), line, reason, raw) for line, reason, raw in scan.rejects]
        rejects += side_rejects
        return _publish(conn, source, scan.path, scan.lines_read, scan.rows_loaded, rejects, reasons, pairs)
    finally:
        _drop_temp(conn)


def read_play_matrix(conn: duckdb.DuckDBPyConnection) -> sp.csr_matrix:
    """The loaded plays as a users x artists float32 CSR matrix (row = user_id, column = artist_id).

    Shape covers every user and artist id in the ``users`` / ``artists`` tables, so artists without
    plays (kept by the synthetic loader) are empty columns.
    """
    n_users = conn.execute("SELECT coalesce(max(user_id) + 1, 0) FROM users").fetchone()[0]
    n_artists = conn.execute("SELECT coalesce(max(artist_id) + 1, 0) FROM artists").fetchone()[0]
    cols = conn.execute("SELECT user_id, artist_id, plays FROM plays").fetchnumpy()
    return canonical_csr(
        sp.coo_matrix(
            (cols["plays"].astype(np.float32), (cols["user_id"], cols["artist_id"])),
            shape=(n_users, n_artists),
        )
    )
