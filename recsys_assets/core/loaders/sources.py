"""The public loaders of the music sources: Last.fm-360K TSV, HetRec folder, synthetic (the triples
loader is in :mod:`.triples`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from recsys_assets.core.loaders.fingerprints import _HETREC_FILES
from recsys_assets.core.loaders.kernels import MAX_FIELD_BYTES
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


def load_synthetic(
    conn: duckdb.DuckDBPyConnection, plays: SyntheticPlays, min_value: float = 0.0
) -> LoadReport:
    """Load a :class:`SyntheticPlays` into the raw tables.

    Keys are the generator's indices as text (``user_key = str(user_index)``, ``artist_key =
    str(artist_index)``) and every artist is kept, even one without listeners, so the dense ids equal
    the generator's indices; ``name`` is the artist name. Plays below ``min_value`` are left out.
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
            min_value=min_value,
        )
        return _publish(conn, "synthetic", Path("<synthetic>"), plays.nnz, plays.nnz, [], {}, pairs)
    finally:
        _drop_temp(conn)


def load_lastfm360k(
    conn: duckdb.DuckDBPyConnection,
    path: str | Path,
    max_reject_fraction: float = 0.01,
    threads: int | None = None,
    min_value: float = 0.0,
    progress: Callable[..., None] | None = None,
) -> LoadReport:
    """Load Last.fm-360K's ``usersha1-artmbid-artname-plays.tsv`` into the raw tables.

    Format: no header, 4 tab-separated fields ``user-sha1, artist-mbid, artist-name, plays``. The
    artist key is the name as written; ``mbid`` is the first non-empty mbid seen for that name (lines
    without a name are rejected as "empty artist" even when they carry an mbid). Streams the file in
    64 MiB blocks scanned on ``threads`` threads (0/None: all cores); memory is ~16 bytes per valid
    line plus the distinct keys plus one block (~130 MiB with its arrays) per thread and one more.
    Lines with fewer plays than ``min_value`` are loaded but left out of ``plays`` (see
    :class:`LoadReport`); ``progress`` follows the scan (see :func:`~.scanner._scan_file`).
    """
    path = Path(path)
    _require_file(
        path,
        "give the path of usersha1-artmbid-artname-plays.tsv (recsys_assets.core.download.fetch_lastfm360k() "
        "downloads it)",
    )
    layout = _Layout("\t", 4, user_field=0, artist_field=2, value_field=3, mbid_field=1)
    scan = _scan_file(path, layout, threads=threads, progress=progress)
    return _load_scan(conn, "lastfm360k", scan, list(scan.artist_keys), max_reject_fraction, min_value)


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
    min_value: float = 0.0,
    progress: Callable[..., None] | None = None,
) -> LoadReport:
    """Load the HetRec-2011 Last.fm-2k folder into the raw tables (plus ``tags`` and ``artist_tags``).

    Plays come from ``user_artists.dat`` (``userID artistID weight``, header); its lines obey the
    module's line rules and the report's counts describe this file. Keys are the HetRec ids as text
    (ids ordered numerically); ``name`` comes from ``artists.dat`` (UTF-8). ``tags.dat`` is Latin-1 as
    distributed. Tag assignments (``user_taggedartists.dat``) for users/artists without plays or tags
    missing from ``tags.dat`` are left out; ``extra`` counts them, and malformed lines of the side
    files also go to ``rejects``. ``min_value`` and ``progress`` as in :func:`load_lastfm360k`.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise LoadError(f"{folder}: not a folder; pass the unzipped hetrec2011-lastfm-2k folder")
    for name in _HETREC_FILES:
        _require_file(folder / name, "pass the unzipped hetrec2011-lastfm-2k folder with all its .dat files")
    layout = _Layout("\t", 3, user_field=0, artist_field=1, value_field=2)
    scan = _scan_file(folder / "user_artists.dat", layout, header=True, threads=threads, progress=progress)
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
            scan.artist_mbid, min_value=min_value,
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
