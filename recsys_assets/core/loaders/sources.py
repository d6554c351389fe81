"""The public loaders, one per source: Last.fm-360K TSV, HetRec folder, triples CSV/Parquet, synthetic."""

from __future__ import annotations

import csv
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from recsys_assets.core.loaders.fingerprints import _HETREC_FILES
from recsys_assets.core.loaders.kernels import MAX_FIELD_BYTES, MAX_PLAYS, MIN_PLAYS
from recsys_assets.core.loaders.scanner import _RAW_LINE_MAX, _Layout, _raw_text, _scan_file
from recsys_assets.core.loaders.staging import (
    LoadError,
    LoadReport,
    _check_counts,
    _drop_temp,
    _load_scan,
    _publish,
    _require_file,
    _stage_frames,
)
from recsys_assets.core.synthetic import SyntheticPlays
from recsys_assets.sql import read_sql

# --------------------------------------------------------------------------------------------------
# Public loaders


def load_synthetic(conn: duckdb.DuckDBPyConnection, plays: SyntheticPlays) -> LoadReport:
    """Load a :class:`SyntheticPlays` into the raw tables.

    Keys are the generator's indices as text (``user_key = str(user_index)``, ``artist_key =
    str(artist_index)``) and every artist is kept, even one without listeners, so the dense ids equal
    the generator's indices; ``name`` is the artist name.
    """
    try:
        pairs = _stage_frames(
            conn,
            plays.user_index,
            plays.artist_index,
            plays.plays,
            [str(i) for i in range(plays.n_users)],
            [str(i) for i in range(plays.n_artists)],
            list(plays.artist_names),
            [None] * plays.n_artists,
            keep_all_keys=True,
        )
        return _publish(conn, "synthetic", Path("<synthetic>"), plays.nnz, plays.nnz, [], {}, pairs)
    finally:
        _drop_temp(conn)


def load_lastfm360k(
    conn: duckdb.DuckDBPyConnection,
    path: str | Path,
    max_reject_fraction: float = 0.01,
    threads: int | None = None,
) -> LoadReport:
    """Load Last.fm-360K's ``usersha1-artmbid-artname-plays.tsv`` into the raw tables.

    Format: no header, 4 tab-separated fields ``user-sha1, artist-mbid, artist-name, plays``. The
    artist key is the name as written; ``mbid`` is the first non-empty mbid seen for that name (lines
    without a name are rejected as "empty artist" even when they carry an mbid). Streams the file in
    64 MiB blocks scanned on ``threads`` threads (0/None: all cores); memory is ~16 bytes per valid
    line plus the distinct keys plus one block (~130 MiB with its arrays) per thread and one more.
    """
    path = Path(path)
    _require_file(
        path,
        "give the path of usersha1-artmbid-artname-plays.tsv (recsys_assets.core.download.fetch_lastfm360k() "
        "downloads it)",
    )
    layout = _Layout("\t", 4, user_field=0, artist_field=2, value_field=3, mbid_field=1)
    scan = _scan_file(path, layout, threads=threads)
    return _load_scan(conn, "lastfm360k", scan, list(scan.artist_keys), max_reject_fraction)


_CONTROL = frozenset(chr(c) for c in (*range(32), 127)) - {"\t"}


def _read_side_file(
    path: Path, n_fields: int, encoding: str, int_fields: tuple[int, ...], name_field: int = -1
) -> tuple[list[list[str]], list[tuple[str, int, str, str]]]:
    """Rows (first ``n_fields`` fields, after a header line) of a small tab-separated HetRec file,
    and its rejects (source_file, line, reason, raw). Fields listed in ``int_fields`` must be integers;
    the ``name_field`` (a name or tag) may have at most ``MAX_FIELD_BYTES`` bytes in UTF-8. The line
    rules on control characters are those of the scanned files."""
    rows: list[list[str]] = []
    rejects: list[tuple[str, int, str, str]] = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            if line_no == 1:
                continue
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            try:
                text = raw.decode(encoding)
            except UnicodeDecodeError:
                rejects.append((str(path), line_no, "invalid UTF-8", _raw_text(raw)))
                continue
            parts = text.split("\t")
            if not text.strip(" "):
                reason = "empty line"
            elif not _CONTROL.isdisjoint(text):
                reason = "control character"
            elif len(parts) != n_fields:
                reason = "wrong field count"
            elif any(not parts[i].strip(" ").isdigit() for i in int_fields):
                reason = "non-integer id"
            elif name_field >= 0 and len(parts[name_field].encode("utf-8")) > MAX_FIELD_BYTES:
                reason = "field too long"
            else:
                rows.append(parts)
                continue
            rejects.append((str(path), line_no, reason, text[:_RAW_LINE_MAX]))
    return rows, rejects


def load_hetrec(
    conn: duckdb.DuckDBPyConnection,
    folder: str | Path,
    max_reject_fraction: float = 0.01,
    threads: int | None = None,
) -> LoadReport:
    """Load the HetRec-2011 Last.fm-2k folder into the raw tables (plus ``tags`` and ``artist_tags``).

    Plays come from ``user_artists.dat`` (``userID artistID weight``, header); its lines obey the
    module's line rules and the report's counts describe this file. Keys are the HetRec ids as text
    (ids ordered numerically); ``name`` comes from ``artists.dat`` (UTF-8). ``tags.dat`` is Latin-1 as
    distributed. Tag assignments (``user_taggedartists.dat``) for users/artists without plays or tags
    missing from ``tags.dat`` are left out; ``extra`` counts them, and malformed lines of the side
    files also go to ``rejects``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError(f"{folder}: not a folder; pass the unzipped hetrec2011-lastfm-2k folder")
    for name in _HETREC_FILES:
        _require_file(folder / name, "pass the unzipped hetrec2011-lastfm-2k folder with all its .dat files")
    layout = _Layout("\t", 3, user_field=0, artist_field=1, value_field=2)
    scan = _scan_file(folder / "user_artists.dat", layout, header=True, threads=threads)
    reasons = _check_counts(scan.path, scan.lines_read, scan.rows_loaded, scan.rejects, max_reject_fraction)
    artist_rows, side_rejects = _read_side_file(folder / "artists.dat", 4, "utf-8", (0,), name_field=1)
    names = {row[0].strip(" "): row[1] for row in artist_rows}
    tag_rows, rej = _read_side_file(folder / "tags.dat", 2, "latin-1", (0,), name_field=1)
    side_rejects += rej
    tagged_rows, rej = _read_side_file(folder / "user_taggedartists.dat", 6, "utf-8", (0, 1, 2))
    side_rejects += rej
    artist_names = [names.get(key) for key in scan.artist_keys]
    try:
        pairs = _stage_frames(
            conn, scan.ucode, scan.acode, scan.value, scan.user_keys, scan.artist_keys, artist_names,
            scan.artist_mbid,
        )  # fmt: skip
        tags = pd.DataFrame(
            {
                "tag_id": np.array([int(r[0]) for r in tag_rows], dtype=np.int32),
                "tag": pd.Series([r[1] for r in tag_rows], dtype=object),
            }
        )
        tagged = pd.DataFrame(
            {
                "user_key": pd.Series([r[0].strip(" ") for r in tagged_rows], dtype=object),
                "artist_key": pd.Series([r[1].strip(" ") for r in tagged_rows], dtype=object),
                "tag_id": np.array([int(r[2]) for r in tagged_rows], dtype=np.int32),
            }
        )
        for table, frame in (("_stage_tags", tags), ("_stage_tagged", tagged)):
            conn.register("_frame", frame)
            try:
                conn.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS SELECT * FROM _frame")
            finally:
                conn.unregister("_frame")
        rejects = [(str(scan.path), line, reason, raw) for line, reason, raw in scan.rejects] + side_rejects
        report = _publish(
            conn, "hetrec", scan.path, scan.lines_read, scan.rows_loaded, rejects, reasons, pairs,
            extra_sql=read_sql("load_hetrec_tags.sql"),
        )  # fmt: skip
        n_tags, n_assigned = conn.execute(
            "SELECT (SELECT count(*) FROM tags), (SELECT count(*) FROM artist_tags)"
        ).fetchone()
    finally:
        _drop_temp(conn)
    loaded_keys = set(scan.artist_keys[c] for c in np.unique(scan.acode).tolist())
    extra = {
        "tags_loaded": n_tags,
        "tag_assignments_loaded": n_assigned,
        "tag_assignments_left_out": len(tagged_rows) - n_assigned,
        "artists_listed_without_plays": len(set(names) - loaded_keys),
        "artists_without_name": sum(1 for key in loaded_keys if key not in names),
        "side_file_rejects": len(side_rejects),
    }
    return LoadReport(**{**report.__dict__, "extra": extra})


def _sniff_header(path: Path, columns: tuple[str, str, str]) -> tuple[str, list[str]]:
    """Delimiter and column names of a CSV header line containing all of ``columns``."""
    with open(path, "rb") as f:
        first = f.readline()
    if not first.strip():
        raise LoadError(f"{path}: the file is empty; expected a header line naming {', '.join(columns)}")
    try:
        header = first.decode("utf-8-sig").rstrip("\n").removesuffix("\r")
    except UnicodeDecodeError as exc:
        raise LoadError(f"{path}: line 1 (header) is not valid UTF-8; re-save the file as UTF-8") from exc
    for delimiter in (",", "\t", ";", "|"):
        names = [n.strip(" ") for n in next(csv.reader([header], delimiter=delimiter))]
        if all(c in names for c in columns):
            return delimiter, names
    raise LoadError(
        f"{path}: line 1 (header) {header[:200]!r} does not name all of the columns {list(columns)} "
        "with one of the delimiters , TAB ; | — pass user_column/item_column/value_column matching the header"
    )


def load_triples(
    conn: duckdb.DuckDBPyConnection,
    path: str | Path,
    user_column: str = "user",
    item_column: str = "item",
    value_column: str = "value",
    max_reject_fraction: float = 0.01,
    threads: int | None = None,
) -> LoadReport:
    """Load generic ``user, item, value`` triples (CSV with a header, or Parquet by extension).

    CSV: the delimiter is the first of ``, TAB ; |`` whose split of the header names all three
    columns; fields may be double-quoted (``""`` escapes a quote; a quoted field cannot span lines);
    each line must have as many fields as the header. Line numbers count the header as line 1;
    ``lines_read`` counts data lines. Parquet: row numbers (1-based) stand in for line numbers.
    Keys are the text of the user/item fields; artist ``name`` = the item key.
    """
    path = Path(path)
    _require_file(path, "check the path")
    columns = (user_column, item_column, value_column)
    if path.suffix.lower() in (".parquet", ".pq"):
        return _load_parquet(conn, path, columns, max_reject_fraction)
    delimiter, names = _sniff_header(path, columns)
    layout = _Layout(
        delimiter, len(names), user_field=names.index(user_column), artist_field=names.index(item_column),
        value_field=names.index(value_column), quoted=True,
    )  # fmt: skip
    scan = _scan_file(path, layout, header=True, threads=threads)
    return _load_scan(conn, "triples", scan, list(scan.artist_keys), max_reject_fraction)


def _quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_NUMERIC_TYPES = frozenset(
    ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT",
     "UHUGEINT", "FLOAT", "DOUBLE")
)  # fmt: skip


def _numeric_type(duckdb_type: str) -> bool:
    """Whether a DuckDB column type holds numbers (booleans, text, dates and the rest do not: a
    Parquet file states its types, so a wrong one is an error about the file, not a per-row reject)."""
    return duckdb_type in _NUMERIC_TYPES or duckdb_type.startswith("DECIMAL(")


def _load_parquet(
    conn: duckdb.DuckDBPyConnection, path: Path, columns: tuple[str, str, str], max_frac: float
) -> LoadReport:
    try:
        types = {
            row[0]: row[1]
            for row in conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
        }
    except duckdb.Error as exc:
        raise LoadError(f"{path}: cannot be read as Parquet ({exc}); check the file") from exc
    missing = [c for c in columns if c not in types]
    if missing:
        raise LoadError(
            f"{path}: Parquet columns {sorted(types)} lack {missing}; "
            "pass user_column/item_column/value_column matching the file"
        )
    value_type = types[columns[2]]
    if not _numeric_type(value_type):
        raise LoadError(
            f"{path}: column {columns[2]!r} has type {value_type}; play counts must be an integer, "
            "floating-point or decimal Parquet column — convert it, or pass the right value_column"
        )
    sql = read_sql("load_parquet_stage.sql")
    sql = sql.format(
        path="'" + str(path).replace("'", "''") + "'",
        user=_quote_ident(columns[0]),
        item=_quote_ident(columns[1]),
        value=_quote_ident(columns[2]),
        max_plays=repr(MAX_PLAYS),
        min_plays=repr(MIN_PLAYS),
        max_field_bytes=MAX_FIELD_BYTES,
    )
    try:
        conn.execute(sql)
        lines_read, rows_loaded = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE reason IS NULL) FROM _parquet_rows"
        ).fetchone()
        rejects = conn.execute(
            "SELECT line_number, reason, concat_ws(chr(9), user_key, artist_key, value_text) "
            "FROM _parquet_rows WHERE reason IS NOT NULL ORDER BY line_number"
        ).fetchall()
        reasons = _check_counts(path, lines_read, rows_loaded, rejects, max_frac)
        staged = conn.execute("SELECT ucode, acode, plays FROM _stage_plays").fetchnumpy()
        pairs = (np.asarray(staged["ucode"]), np.asarray(staged["acode"]), np.asarray(staged["plays"]))
        return _publish(
            conn, "triples", path, lines_read, rows_loaded,
            [(str(path), line, reason, raw) for line, reason, raw in rejects], reasons, pairs,
        )  # fmt: skip
    finally:
        _drop_temp(conn)
