"""The generic loader: ``user, item, value`` triples from any ratings or play-count file (CSV/TSV with
or without a header, or Parquet), with item names from a column of the file or from a second file.

Columns are named by header name or by 1-based position (``user_column = 1``). What is obvious is
inferred: in a file of exactly three columns the value column is the one that is neither the user
nor the item column, and a headerless three-column file is ``user, item, value`` in that order. The
delimiter of a text file is the first of ``, TAB ; |`` under which the file's first lines hold every
configured column (or the one given).

Item names: ``item_name_column`` names a column of the triples file (its first non-empty value per
item is the item's name), or, with ``items_path``, the name column of an items file (CSV/TSV, one
line per item: key and name; extra columns are ignored; the key is the column named like
``item_column`` when that file's header has it, else its first column). Names become the ``name``
column of the ``artists`` table, so every output and the CLI (``recsys related "<title>"``) use them;
an item without a name is named by its key.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

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
)
from recsys_assets.sql import read_sql

# A column of a triples file: its header name, or its 1-based position.
Column = str | int

DEFAULT_COLUMNS = ("user", "item", "value")
_DELIMITERS = (",", "\t", ";", "|")
_SAMPLE_LINES = 20  # data lines read to find the delimiter of a file without a header
_CONTROL = frozenset(chr(c) for c in (*range(32), 127)) - {"\t"}
_SETTINGS = ("user_column", "item_column", "value_column")


class _Unresolved(Exception):
    """A column setting that does not fit a candidate delimiter's split (message for the user)."""


def _split(line: str, delimiter: str) -> list[str]:
    """Fields of one line (double quotes as in the scanner: ``""`` escapes a quote), spaces trimmed."""
    return [f.strip(" ") for f in next(csv.reader([line], delimiter=delimiter), [])]


def _sample(path: Path, header: bool) -> tuple[str | None, list[str]]:
    """The header line (None without ``header``) and up to ``_SAMPLE_LINES`` non-blank data lines."""
    lines: list[str] = []
    first: str | None = None
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            text = raw.decode("utf-8-sig" if number == 1 else "utf-8", errors="replace")
            text = text.rstrip("\n").removesuffix("\r")
            if number == 1 and header:
                first = text
                continue
            if text.strip(" "):
                lines.append(text)
            if len(lines) >= _SAMPLE_LINES:
                break
    if header and (first is None or not first.strip()):
        raise LoadError(
            f"{path}: line 1 should be the header (header = true) but the file is empty or line 1 is blank"
        )
    if not header and not lines:
        raise LoadError(f"{path}: no data lines (the file is empty); check the file")
    return first, lines


def _index(ref: Column, setting: str, names: list[str] | None, n_fields: int) -> int | None:
    """0-based index of a column setting, None when a name cannot be looked up (no header)."""
    if isinstance(ref, int):
        if not 1 <= ref <= n_fields:
            raise _Unresolved(f"[data] {setting} = {ref}, but lines have {n_fields} field(s)")
        return ref - 1
    if names is None:
        return None
    if ref not in names:
        raise _Unresolved(f"the header names no column {ref!r} ([data] {setting}); it names {names}")
    return names.index(ref)


def _resolve(refs: tuple[Column, Column, Column], names: list[str] | None, n_fields: int) -> list[int]:
    """Indices of the user, item and value columns, with the inference rules of the module docstring."""
    index: list[int | None] = []
    for setting, ref, default in zip(_SETTINGS, refs, DEFAULT_COLUMNS, strict=True):
        try:
            index.append(_index(ref, setting, names, n_fields))
        except _Unresolved:
            # The value column of a three-column file need not be named: it is the remaining one.
            if setting != "value_column" or n_fields != 3 or ref != default:
                raise
            index.append(None)
    if names is None and n_fields == 3:  # headerless user, item, value: the default names mean 1, 2, 3
        for k, (ref, default) in enumerate(zip(refs, DEFAULT_COLUMNS, strict=True)):
            if index[k] is None and ref == default:
                index[k] = k
    if index[2] is None and n_fields == 3 and index[0] is not None and index[1] is not None:
        index[2] = 3 - index[0] - index[1] if index[0] != index[1] else None
    for setting, i in zip(_SETTINGS, index, strict=True):
        if i is None:
            raise _Unresolved(
                f"a file without a header (header = false) of {n_fields} columns names its columns by "
                f"1-based position: set [data] {setting} (and the other column settings) to numbers"
            )
    if len(set(index)) < 3:
        raise _Unresolved(
            f"the user, item and value columns must differ; they are columns {[i + 1 for i in index]}"
        )
    return index  # type: ignore[return-value]


def _text_layout(
    path: Path,
    header: bool,
    delimiter: str,
    refs: tuple[Column, Column, Column],
    name_ref: Column,
) -> tuple[_Layout, list[str] | None]:
    """The scanner layout of a triples text file (and its header names, if it has a header)."""
    first, lines = _sample(path, header)
    problems: list[str] = []
    for d in (delimiter,) if delimiter else _DELIMITERS:
        if header:
            names = _split(first, d)
            n_fields = len(names)
        else:
            names = None
            counts = Counter(len(_split(line, d)) for line in lines)
            n_fields, seen = counts.most_common(1)[0]
            if seen < 0.9 * len(lines):
                problems.append(f"{d!r}: field counts {sorted(counts)} vary")
                continue
        try:
            user, item, value = _resolve(refs, names, n_fields)
            name = -1 if name_ref == "" else _index(name_ref, "item_name_column", names, n_fields)
            if name is None:
                raise _Unresolved("a file without a header names [data] item_name_column by 1-based position")
        except _Unresolved as exc:
            if n_fields > 1:
                problems.append(f"{'TAB' if d == chr(9) else repr(d)}: {exc}")
            continue
        layout = _Layout(d, n_fields, user_field=user, artist_field=item, value_field=value,
                         mbid_field=name, quoted=True)  # fmt: skip
        return layout, names
    where = f"line 1 (header) {first[:200]!r}" if header else f"the first lines (e.g. {lines[0][:200]!r})"
    tried = "the delimiter " + repr(delimiter) if delimiter else "any of the delimiters , TAB ; |"
    raise LoadError(
        f"{path}: {where} cannot be read as {'/'.join(map(str, refs))} columns with {tried}"
        + (f" ({'; '.join(problems)})" if problems else "")
        + "; set [data] user_column/item_column/value_column to header names or 1-based positions, "
        "header to whether line 1 names the columns, or delimiter"
    )


def _read_items(
    path: Path, header: bool, item_ref: Column, name_ref: Column
) -> tuple[dict[str, str], int, list[tuple[str, int, str, str]]]:
    """Item names from an items file: (key -> name, lines read, rejects (file, line, reason, raw)).

    Key column: the one named like ``item_ref`` when the header has it, else the first; name column:
    ``name_ref`` (header name or 1-based position), or by default the first column that is not the key.
    A line is rejected for invalid UTF-8, control characters, too few fields, an empty key, or a key or
    name over ``MAX_FIELD_BYTES`` bytes; the first line of a key wins, and an empty name names nothing.
    """
    _require_file(path, "fix [data] items_path (a CSV/TSV file of item key and name)")
    first, lines = _sample(path, header)
    choice = None
    for d in _DELIMITERS:
        names = _split(first, d) if header else None
        key = names.index(item_ref) if names is not None and item_ref in names else 0
        if isinstance(name_ref, int):
            name = name_ref - 1
        elif name_ref:
            if names is None or name_ref not in names:
                continue
            name = names.index(name_ref)
        else:
            name = 1 if key == 0 else 0
        need = max(key, name) + 1
        if names is not None and len(names) < need:
            continue
        if sum(len(_split(line, d)) >= need for line in lines) >= 0.9 * len(lines) and need > 1:
            choice = (d, key, name, need)
            break
    if choice is None:
        raise LoadError(
            f"{path}: cannot find the key and name columns of this items file with any of the delimiters "
            f", TAB ; | (header = {str(header).lower()}, item_name_column = {name_ref!r}); each line should hold "
            "an item key and its name"
        )
    d, key, name, need = choice
    out: dict[str, str] = {}
    rejects: list[tuple[str, int, str, str]] = []
    n_lines = 0
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            if number == 1 and header:
                continue
            n_lines += 1
            raw = raw.rstrip(b"\n").removesuffix(b"\r")
            try:
                text = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError:
                rejects.append((str(path), number, "invalid UTF-8", _raw_text(raw)))
                continue
            fields = _split(text, d) if text.strip(" ") else []
            if not fields:
                reason = "empty line"
            elif not _CONTROL.isdisjoint(text):
                reason = "control character"
            elif len(fields) < need:
                reason = "wrong field count"
            elif not fields[key]:
                reason = "empty item"
            elif max(len(fields[key].encode()), len(fields[name].encode())) > MAX_FIELD_BYTES:
                reason = "field too long"
            else:
                if fields[name]:
                    out.setdefault(fields[key], fields[name])
                continue
            rejects.append((str(path), number, reason, text[:_RAW_LINE_MAX]))
    return out, n_lines, rejects


def _named(
    keys: list[str], found: list[str | None], items: dict[str, str] | None
) -> tuple[list[str | None], set[str]]:
    """Each item's name: from the items file (``items``), else from the name column (``found``), else
    its key; and the keys named by their key only."""
    names = [items.get(k) for k in keys] if items is not None else list(found)
    unnamed = {k for k, n in zip(keys, names, strict=True) if n is None}
    return [k if n is None else n for k, n in zip(keys, names, strict=True)], unnamed


def _with_extra(
    report: LoadReport, conn: duckdb.DuckDBPyConnection, unnamed: set[str], items: dict[str, str] | None
) -> LoadReport:
    """``report`` with counts about names, over the items loaded (those with a positive): items named by
    their key only, and (with an items file) items of that file without any positive."""
    loaded = {k for (k,) in conn.execute("SELECT artist_key FROM artists").fetchall()}
    extra = {"items_without_name": len(loaded & unnamed)}
    if items is not None:
        extra["named_items_without_positives"] = len(set(items) - loaded)
    return LoadReport(**{**report.__dict__, "extra": {**report.extra, **extra}})


def load_triples(
    conn: duckdb.DuckDBPyConnection,
    path: str | Path,
    user_column: Column = "user",
    item_column: Column = "item",
    value_column: Column = "value",
    max_reject_fraction: float = 0.01,
    threads: int | None = None,
    *,
    header: bool = True,
    delimiter: str = "",
    item_name_column: Column = "",
    items_path: str | Path | None = None,
    min_value: float = 0.0,
    progress: Callable[..., None] | None = None,
) -> LoadReport:
    """Load generic ``user, item, value`` triples (see the module docstring for columns and names).

    Text files: ``header`` says whether line 1 names the columns; ``delimiter`` ("" = detect) is one
    of ``, TAB ; |``; fields may be double-quoted (``""`` escapes a quote; a quoted field cannot span
    lines); each line must have as many fields as the header (or, without one, as most of the first
    lines). Line numbers count the header as line 1; ``lines_read`` counts data lines. Parquet (by
    extension ``.parquet``/``.pq``): columns by name or position, row numbers (1-based) stand in for
    line numbers. Keys are the text of the user/item fields. Rows with a value below ``min_value`` are
    loaded but are not positives (left out of ``plays``, counted in ``rows_below_min_value``). Lines
    of the items file that cannot be read go to ``rejects`` and count against
    ``max_reject_fraction`` of that file. ``progress`` follows the scan of a text file.
    """
    path = Path(path)
    _require_file(path, "check the path")
    refs = (user_column, item_column, value_column)
    items: dict[str, str] | None = None
    side_rejects: list[tuple[str, int, str, str]] = []
    if items_path:
        items_path = Path(items_path)
        items, n_item_lines, side_rejects = _read_items(items_path, header, item_column, item_name_column)
        named = n_item_lines - len(side_rejects)
        _check_counts(items_path, n_item_lines, named, [r[1:] for r in side_rejects], max_reject_fraction)
    if path.suffix.lower() in (".parquet", ".pq"):
        name_ref = "" if items_path else item_name_column
        return _load_parquet(conn, path, refs, name_ref, items, side_rejects, max_reject_fraction, min_value)
    layout, _ = _text_layout(path, header, delimiter, refs, "" if items_path else item_name_column)
    scan = _scan_file(path, layout, header=header, threads=threads, progress=progress)
    names, unnamed = _named(scan.artist_keys, scan.artist_mbid, items)
    report = _load_scan(
        conn, "triples", scan, names, max_reject_fraction, min_value,
        mbids=[None] * len(names), side_rejects=side_rejects,
    )  # fmt: skip
    return _with_extra(report, conn, unnamed, items)


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
    conn: duckdb.DuckDBPyConnection,
    path: Path,
    refs: tuple[Column, Column, Column],
    name_ref: Column,
    items: dict[str, str] | None,
    side_rejects: list[tuple[str, int, str, str]],
    max_frac: float,
    min_value: float,
) -> LoadReport:
    try:
        described = conn.execute("DESCRIBE SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    except duckdb.Error as exc:
        raise LoadError(f"{path}: cannot be read as Parquet ({exc}); check the file") from exc
    names = [row[0] for row in described]
    types = {row[0]: row[1] for row in described}
    try:
        user, item, value = _resolve(refs, names, len(names))
        name = -1 if name_ref == "" else _index(name_ref, "item_name_column", names, len(names))
    except _Unresolved as exc:
        raise LoadError(
            f"{path}: Parquet columns {names}: {exc}; set [data] user_column/item_column/value_column "
            "to column names or 1-based positions"
        ) from None
    value_type = types[names[value]]
    if not _numeric_type(value_type):
        raise LoadError(
            f"{path}: column {names[value]!r} has type {value_type}; values must be an integer, "
            "floating-point or decimal Parquet column — convert it, or set [data] value_column"
        )
    sql = read_sql("load_parquet_stage.sql")
    sql = sql.format(
        path="'" + str(path).replace("'", "''") + "'",
        user=_quote_ident(names[user]),
        item=_quote_ident(names[item]),
        value=_quote_ident(names[value]),
        name="NULL" if name < 0 else _quote_ident(names[name]),
        max_plays=repr(MAX_PLAYS),
        min_plays=repr(MIN_PLAYS),
        min_value=repr(float(min_value)),
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
        staged = conn.execute(
            "SELECT acode, artist_key, item_name FROM _stage_artists ORDER BY acode"
        ).fetchall()
        named, unnamed = _named([r[1] for r in staged], [r[2] for r in staged], items)
        frame = pd.DataFrame(
            {
                "acode": np.array([r[0] for r in staged], dtype=np.int32),
                "name": pd.Series(named, dtype=object),
            }
        )
        conn.register("_names_frame", frame)
        try:
            conn.execute(
                "UPDATE _stage_artists SET name = n.name FROM _names_frame n WHERE n.acode = _stage_artists.acode"
            )
        finally:
            conn.unregister("_names_frame")
        rows = conn.execute("SELECT ucode, acode, plays FROM _stage_plays").fetchnumpy()
        pairs = (np.asarray(rows["ucode"]), np.asarray(rows["acode"]), np.asarray(rows["plays"]))
        report = _publish(
            conn, "triples", path, lines_read, rows_loaded,
            [(str(path), line, reason, raw) for line, reason, raw in rejects] + side_rejects, reasons, pairs,
        )  # fmt: skip
        return _with_extra(report, conn, unnamed, items)
    finally:
        _drop_temp(conn)
