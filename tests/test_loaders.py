"""Tests for the raw-table loaders: each source, every bad-input kind, conservation, atomicity."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pytest

from recsys_assets import sql
from recsys_assets.core import loaders
from recsys_assets.core.loaders import (
    LoadError,
    file_fingerprint,
    fingerprints,
    load_hetrec,
    load_lastfm360k,
    load_synthetic,
    load_triples,
    raw_schema_sql,
    scanner,
)
from recsys_assets.core.synthetic import generate_plays
from tests.conftest import HETREC_DIR as HETREC

FIXTURES = Path(__file__).parent / "fixtures"
BAD_LINES = FIXTURES / "lastfm_bad_lines.tsv"

# What each line of lastfm_bad_lines.tsv is (hand-made fixture): None = loads.
EXPECTED_LINES: dict[int, str | None] = {
    1: None,
    2: None,  # CRLF, empty mbid
    3: "empty line",
    4: "wrong field count",
    5: "wrong field count",
    6: "invalid UTF-8",
    7: "empty user",
    8: "empty artist",
    9: "empty plays",
    10: "non-numeric plays",
    11: "negative plays",
    12: "non-finite plays",
    13: "non-finite plays",
    14: "zero plays",
    15: None,  # CRLF, duplicate of line 1 (summed)
    16: None,  # 1e2 goes through the slow path
    17: None,
    18: None,  # valid non-ASCII UTF-8
    19: None,  # a quote is plain data in the TSV
    20: "non-numeric plays",  # 1_000
    21: "control character",  # NUL inside the artist name
    22: "plays too large",  # 1e300: finite as a double, infinite as float32
    23: "plays too large",  # 1e13 (fast path)
    24: "plays too small",  # 1e-39: below float32's smallest normal number
    25: "control character",  # a bare CR inside the artist name
    26: "field too long",  # 1,001-byte artist name
    27: None,  # a 1,000-byte name (500 x "é") and plays = MAX_PLAYS, both at the limit
    28: None,  # no final newline
}


def _table(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple]:
    return conn.execute(sql).fetchall()


def _plays_by_key(conn: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], float]:
    rows = _table(
        conn,
        "SELECT u.user_key, a.artist_key, p.plays FROM plays p "
        "JOIN users u USING (user_id) JOIN artists a USING (artist_id)",
    )
    return {(u, a): v for u, a, v in rows}


def _reference_parse(path: Path) -> dict[tuple[str, str], float]:
    """Slow, obvious reading of the good lines of a Last.fm TSV (lines known to be valid)."""
    out: dict[tuple[str, str], float] = {}
    for line_no, raw in enumerate(path.read_bytes().split(b"\n"), start=1):
        if EXPECTED_LINES.get(line_no, "missing") is not None:
            continue
        user, _, artist, plays = raw.decode("utf-8").removesuffix("\r").split("\t")
        out[(user, artist)] = out.get((user, artist), 0.0) + float(plays)
    return out


@pytest.fixture
def conn() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    yield c
    c.close()


def test_raw_schema_creates_tables(conn: duckdb.DuckDBPyConnection) -> None:
    conn.execute(raw_schema_sql())
    tables = {r[0] for r in _table(conn, "SELECT table_name FROM information_schema.tables")}
    assert {"users", "artists", "plays", "rejects", "load_log", "tags", "artist_tags"} <= tables


def test_bad_lines_each_kind_rejected_with_line_and_reason(conn: duckdb.DuckDBPyConnection) -> None:
    report = load_lastfm360k(conn, BAD_LINES, max_reject_fraction=1.0)
    rejects = _table(conn, "SELECT line_number, reason, source_file FROM rejects ORDER BY line_number")
    expected = [(line, reason) for line, reason in EXPECTED_LINES.items() if reason is not None]
    assert [(line, reason) for line, reason, _ in rejects] == expected
    assert {src for _, _, src in rejects} == {str(BAD_LINES)}
    # Conservation, and the counts agree with the tables.
    assert report.lines_read == len(EXPECTED_LINES)
    assert report.lines_read == report.rows_loaded + report.rows_rejected
    assert report.rows_rejected == len(expected)
    assert sum(report.reject_reasons.values()) == report.rows_rejected
    assert report.reject_reasons["non-finite plays"] == 2
    assert report.reject_reasons["plays too large"] == 2
    assert report.reject_reasons["control character"] == 2
    reference = _reference_parse(BAD_LINES)
    assert _plays_by_key(conn) == reference
    assert report.n_plays == len(reference) == _table(conn, "SELECT count(*) FROM plays")[0][0]
    assert report.duplicates_merged == report.rows_loaded - report.n_plays == 1
    assert report.n_users == len({u for u, _ in reference})
    assert report.n_artists == len({a for _, a in reference})


def test_invalid_utf8_line_keeps_its_bytes_visible(conn: duckdb.DuckDBPyConnection) -> None:
    load_lastfm360k(conn, BAD_LINES, max_reject_fraction=1.0)
    (raw,) = _table(conn, "SELECT raw_line FROM rejects WHERE reason = 'invalid UTF-8'")[0]
    assert "\\xff" in raw
    names = {r[0] for r in _table(conn, "SELECT name FROM artists")}
    assert "Café Tacvba" in names and 'Artist "Q"' in names
    # "The X" and "X" are two artists, as written in the dataset.
    assert {"The Arcade Fire", "Arcade Fire"} <= names


def test_mbid_is_first_nonempty_and_ids_dense_sorted(conn: duckdb.DuckDBPyConnection) -> None:
    load_lastfm360k(conn, BAD_LINES, max_reject_fraction=1.0)
    mbid = dict(_table(conn, "SELECT artist_key, mbid FROM artists"))
    assert mbid["Artist A"] == "m-a"
    assert mbid["Artist B"] == "m-b"  # line 2 had no mbid, line 28 has one
    assert mbid["Arcade Fire"] is None
    for table, id_col, key_col in (("users", "user_id", "user_key"), ("artists", "artist_id", "artist_key")):
        rows = _table(conn, f"SELECT {id_col}, {key_col} FROM {table} ORDER BY {id_col}")
        assert [r[0] for r in rows] == list(range(len(rows)))
        assert [r[1] for r in rows] == sorted(r[1] for r in rows)


def test_crlf_file_loads_like_lf_file(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    lf = tmp_path / "lf.tsv"
    crlf = tmp_path / "crlf.tsv"
    body = "u1\tm\tA\t3\nu2\t\tB\t4\nu2\tm\tA\t1\n"
    lf.write_bytes(body.encode())
    crlf.write_bytes(body.replace("\n", "\r\n").encode())
    report_lf = load_lastfm360k(conn, lf)
    plays_lf = _plays_by_key(conn)
    report_crlf = load_lastfm360k(conn, crlf)
    assert _plays_by_key(conn) == plays_lf == {("u1", "A"): 3.0, ("u2", "B"): 4.0, ("u2", "A"): 1.0}
    assert report_crlf.rows_rejected == report_lf.rows_rejected == 0


def _load_tables(conn: duckdb.DuckDBPyConnection) -> dict[str, list[tuple]]:
    """Everything a load wrote, ids included (load_log without its timestamp)."""
    tables = {
        t: _table(conn, f"SELECT * FROM {t} ORDER BY ALL") for t in ("users", "artists", "plays", "rejects")
    }
    tables["load_log"] = _table(conn, "SELECT * EXCLUDE (loaded_at) FROM load_log ORDER BY ALL")
    return tables


@pytest.mark.parametrize(("chunk", "threads"), [(7, 1), (7, 3), (64, 2)])
def test_small_blocks_and_threads_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, threads: int
) -> None:
    serial = duckdb.connect(str(tmp_path / "serial.duckdb"))
    load_lastfm360k(serial, BAD_LINES, max_reject_fraction=1.0, threads=1)
    monkeypatch.setattr(scanner, "_CHUNK_BYTES", chunk)  # lines straddle every block boundary
    blocks = duckdb.connect(str(tmp_path / "blocks.duckdb"))
    load_lastfm360k(blocks, BAD_LINES, max_reject_fraction=1.0, threads=threads)
    assert _load_tables(blocks) == _load_tables(serial)


def _messy_lines(rng: np.random.Generator, n: int, csv_quoting: bool) -> list[bytes]:
    """Seeded mix of valid and bad lines (CRLF on some), keys repeating so interning matters."""
    users = [f"user-{i:03d}".encode() for i in range(40)]
    artists = [f"Artist {i}".encode() for i in range(150)] + ["Café ü".encode(), b"Sigur R\xc3\xb3s"]
    if csv_quoting:
        artists += [b'"Crosby, Stills"', b'"Say ""Hi"""']
    sep = b"," if csv_quoting else b"\t"
    bad = [
        b"",
        b"   ",
        b"u" + sep + b"only two",
        b"u" + sep + b"A" + sep + b"\xff\xfe" + sep + b"1",
        b"u" + sep + b"Nul\x00" + sep + b"m" + sep + b"2",
        b"u" + sep + b"Cr\rx" + sep + b"m" + sep + b"2",
    ]
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.1:
            line = bad[rng.integers(len(bad))]
        else:
            value = [b"3", b"1e2", b"0", b"-1", b"1e300", b"2.5", b"x", b"1e-39"][rng.integers(8)]
            if rng.random() < 0.75:
                value = str(int(rng.integers(1, 500))).encode()
            mbid = b"" if rng.random() < 0.3 else f"mb-{rng.integers(5)}".encode()
            line = sep.join(
                [users[rng.integers(len(users))], artists[rng.integers(len(artists))], mbid, value]
            )
        out.append(line + (b"\r" if rng.random() < 0.2 else b""))
    if csv_quoting:
        out.insert(n // 2, b'u1,"two')  # a quoted field cannot span lines: both halves are bad quoting
        out.insert(n // 2 + 1, b'lines",m,3')
    return out


@pytest.mark.parametrize("csv_quoting", [False, True])
def test_parallel_scan_equals_serial_scan_on_a_messy_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, csv_quoting: bool
) -> None:
    rng = np.random.default_rng(11)
    lines = _messy_lines(rng, 3000, csv_quoting)
    path = tmp_path / ("plays.csv" if csv_quoting else "plays.tsv")
    header = [b"user,item,mbid,value"] if csv_quoting else []
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(header + lines))  # BOM, no final newline
    if csv_quoting:
        layout = scanner._Layout(",", 4, user_field=0, artist_field=1, value_field=3, quoted=True)
    else:
        layout = scanner._Layout("\t", 4, user_field=0, artist_field=1, value_field=3, mbid_field=2)

    def scan(chunk: int, threads: int) -> tuple:
        monkeypatch.setattr(scanner, "_CHUNK_BYTES", chunk)
        s = scanner._scan_file(path, layout, header=csv_quoting, threads=threads)
        return (
            s.lines_read, s.ucode.tolist(), s.acode.tolist(), s.value.tolist(), s.user_keys,
            s.artist_keys, s.artist_mbid, s.rejects,
        )  # fmt: skip

    serial = scan(1 << 30, 1)  # the whole file is one block: a plain serial scan
    assert serial[0] == len(lines) and len(serial[-1]) > 200  # every kind of line occurs
    assert len(serial[1]) + len(serial[-1]) == serial[0]
    for chunk, threads in ((5, 3), (97, 2), (4096, 2)):
        assert scan(chunk, threads) == serial, (chunk, threads)
    first_line = 2 if csv_quoting else 1
    for line_no, reason, raw in serial[-1]:
        expected = lines[line_no - first_line].removesuffix(b"\r")
        assert raw == expected.decode("utf-8", errors="backslashreplace"), (line_no, reason)


def test_synthetic_roundtrip_through_tsv_grows_interners(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # > 32K distinct 40-character user keys: the key tables and arenas must grow several times.
    syn = generate_plays(n_users=40_000, n_artists=600, artists_per_user=2.0, seed=5)
    user_keys = [f"{i:040x}" for i in range(syn.n_users)]
    path = tmp_path / "syn.tsv"
    with open(path, "w", encoding="utf-8") as f:
        for u, a, p in zip(
            syn.user_index.tolist(), syn.artist_index.tolist(), syn.plays.tolist(), strict=True
        ):
            f.write(f"{user_keys[u]}\tmbid-{a}\t{syn.artist_names[a]}\t{p}\n")
    report = load_lastfm360k(conn, path)
    assert report.rows_rejected == 0 and report.duplicates_merged == 0
    expected = {
        (user_keys[u], syn.artist_names[a]): float(p)
        for u, a, p in zip(
            syn.user_index.tolist(), syn.artist_index.tolist(), syn.plays.tolist(), strict=True
        )
    }
    assert _plays_by_key(conn) == expected
    mbid = dict(_table(conn, "SELECT artist_key, mbid FROM artists"))
    assert all(mbid[syn.artist_names[a]] == f"mbid-{a}" for a in np.unique(syn.artist_index).tolist())


def test_load_synthetic_ids_equal_generator_indices(conn: duckdb.DuckDBPyConnection) -> None:
    syn = generate_plays(n_users=200, n_artists=300, artists_per_user=10, seed=2)
    report = load_synthetic(conn, syn)
    assert report.n_plays == syn.nnz and report.rows_loaded == syn.nnz
    rows = np.array(_table(conn, "SELECT user_id, artist_id, plays FROM plays ORDER BY 1, 2"))
    np.testing.assert_array_equal(rows[:, 0], syn.user_index)
    np.testing.assert_array_equal(rows[:, 1], syn.artist_index)
    np.testing.assert_array_equal(rows[:, 2], syn.plays)
    names = [r[0] for r in _table(conn, "SELECT name FROM artists ORDER BY artist_id")]
    assert names == syn.artist_names
    assert report.n_artists == syn.n_artists
    assert len(np.unique(syn.artist_index)) < syn.n_artists  # the case this test is about


@pytest.mark.parametrize(
    ("content", "match"),
    [(b"", "no data lines"), (b"\n \n", "none of 2 lines is valid"), (b"u\tm\ta\t0\n", "zero plays")],
)
def test_unusable_file_raises(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, content: bytes, match: str
) -> None:
    path = tmp_path / "plays.tsv"
    path.write_bytes(content)
    with pytest.raises(LoadError, match=match) as info:
        load_lastfm360k(conn, path)
    assert str(path) in str(info.value)


def test_missing_file_raises_with_name(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    missing = tmp_path / "nope.tsv"
    with pytest.raises(LoadError, match="nope.tsv: file not found"):
        load_lastfm360k(conn, missing)
    with pytest.raises(LoadError, match="not a folder"):
        load_hetrec(conn, missing)
    with pytest.raises(LoadError, match="file not found"):
        load_triples(conn, missing)


def test_reject_fraction_exceeded_leaves_tables_intact(conn: duckdb.DuckDBPyConnection) -> None:
    syn = generate_plays(n_users=50, n_artists=80, artists_per_user=5, seed=1)
    load_synthetic(conn, syn)
    before = {t: _table(conn, f"SELECT * FROM {t} ORDER BY ALL") for t in ("users", "artists", "plays")}
    with pytest.raises(LoadError, match="max_reject_fraction") as info:
        load_lastfm360k(conn, BAD_LINES, max_reject_fraction=0.2)
    assert "19 of 28 lines rejected" in str(info.value)
    assert "wrong field count: 2 (first at line 4)" in str(info.value)
    after = {t: _table(conn, f"SELECT * FROM {t} ORDER BY ALL") for t in ("users", "artists", "plays")}
    assert after == before
    assert _table(conn, "SELECT count(*) FROM load_log")[0][0] == 1


def test_failure_inside_transaction_rolls_back(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    syn = generate_plays(n_users=50, n_artists=80, artists_per_user=5, seed=1)
    load_synthetic(conn, syn)
    before = _table(conn, "SELECT * FROM plays ORDER BY ALL")
    broken = tmp_path / "sql"
    broken.mkdir()
    shutil.copy(sql.SQL_DIR / "raw_schema.sql", broken / "raw_schema.sql")
    (broken / "load_finish.sql").write_text("INSERT INTO users SELECT * FROM no_such_table;")
    monkeypatch.setattr(sql, "SQL_DIR", broken)
    with pytest.raises(duckdb.Error):
        load_lastfm360k(conn, BAD_LINES, max_reject_fraction=1.0)
    assert _table(conn, "SELECT * FROM plays ORDER BY ALL") == before
    assert not _table(
        conn, "SELECT table_name FROM information_schema.tables WHERE table_name LIKE '\\_stage%' ESCAPE '\\'"
    )


def test_triples_csv_quoting_sniffing_and_bad_quotes(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(
        b'item;listener;count;note\r\nA;u1;3;x\r\n"B;b";u2;4.5;\r\n"C""c";"u1";"2";y\r\n'
        b'D;u3;1\r\n"E;u3;1;q\r\nF"x;u3;1;q\r\nA;u1;1;z\r\n'
    )
    report = load_triples(
        conn, path, user_column="listener", item_column="item", value_column="count", max_reject_fraction=1.0
    )
    assert report.lines_read == 7 and report.rows_loaded == 4 and report.duplicates_merged == 1
    assert _plays_by_key(conn) == {("u1", "A"): 4.0, ("u2", "B;b"): 4.5, ("u1", 'C"c'): 2.0}
    rejects = _table(conn, "SELECT line_number, reason FROM rejects ORDER BY 1")
    assert rejects == [(5, "wrong field count"), (6, "bad quoting"), (7, "bad quoting")]


def test_triples_header_problems(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    header_only = tmp_path / "h.csv"
    header_only.write_text("user,item,value\n")
    with pytest.raises(LoadError, match="no data lines"):
        load_triples(conn, header_only)
    wrong = tmp_path / "w.csv"
    wrong.write_text("u,i,v\n1,2,3\n")
    with pytest.raises(LoadError, match=r"line 1 \(header\) 'u,i,v' .*names no column 'user'"):
        load_triples(conn, wrong)
    empty = tmp_path / "e.csv"
    empty.write_text("")
    with pytest.raises(LoadError, match="empty"):
        load_triples(conn, empty)


def test_triples_parquet(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    conn.execute(
        "COPY (SELECT * FROM (VALUES ('u1', 'a', 3.0), ('u2', 'b', 0.0), ('u1', 'a', 2.0), (NULL, 'c', 1.0), "
        "('u2', 'c', 'nan'::DOUBLE), ('u3', 'a', 1.5)) t(usr, itm, val)) TO '" + str(path) + "'"
    )
    report = load_triples(
        conn, path, user_column="usr", item_column="itm", value_column="val", max_reject_fraction=1
    )
    assert (report.lines_read, report.rows_loaded, report.duplicates_merged) == (6, 3, 1)
    assert _plays_by_key(conn) == {("u1", "a"): 5.0, ("u3", "a"): 1.5}
    rejects = _table(conn, "SELECT line_number, reason FROM rejects ORDER BY 1")
    assert rejects == [(2, "zero plays"), (4, "empty user"), (5, "non-finite plays")]
    with pytest.raises(LoadError, match=r"Parquet columns \['usr', 'itm', 'val'\]: .*no column 'user'"):
        load_triples(conn, path)


@pytest.mark.skipif(not HETREC.is_dir(), reason="HetRec Last.fm-2k data not present")
def test_hetrec_counts_match_the_files(conn: duckdb.DuckDBPyConnection) -> None:
    report = load_hetrec(conn, HETREC)
    lines = (HETREC / "user_artists.dat").read_text().splitlines()[1:]
    triples = [line.split("\t") for line in lines]
    assert report.lines_read == report.rows_loaded == len(triples)
    assert report.n_users == len({t[0] for t in triples})
    assert report.n_artists == len({t[1] for t in triples})
    assert report.n_plays == len({(t[0], t[1]) for t in triples})
    total = sum(float(t[2]) for t in triples)
    assert _table(conn, "SELECT sum(plays) FROM plays")[0][0] == pytest.approx(total)
    names = dict(
        line.split("\t")[:2] for line in (HETREC / "artists.dat").read_text(encoding="utf-8").splitlines()[1:]
    )
    sample = _table(conn, "SELECT artist_key, name FROM artists USING SAMPLE 50 ROWS")
    assert all(names[k] == n for k, n in sample)
    # user ids follow the numeric order of the HetRec ids
    keys = [int(r[0]) for r in _table(conn, "SELECT user_key FROM users ORDER BY user_id")]
    assert keys == sorted(keys)
    tagged = [ln.split("\t") for ln in (HETREC / "user_taggedartists.dat").read_text().splitlines()[1:]]
    users, artists = {t[0] for t in triples}, {t[1] for t in triples}
    kept = sum(1 for t in tagged if t[0] in users and t[1] in artists)
    assert report.extra["tag_assignments_loaded"] == kept
    assert report.extra["tag_assignments_left_out"] == len(tagged) - kept
    tag_lines = (HETREC / "tags.dat").read_bytes().decode("latin-1").splitlines()[1:]
    assert report.extra["tags_loaded"] == len(tag_lines)


def test_fingerprint_cache_touch_rewrite_and_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "data.tsv"
    path.write_bytes(b"abc\n")
    old = time.time_ns() - 10 * 10**9  # older than the cache's "racy" window, so it is remembered
    os.utime(path, ns=(old, old))
    cache = tmp_path / "cache" / "fp.json"
    reads: list[Path] = []
    real_hash = fingerprints.file_hash
    monkeypatch.setattr(fingerprints, "file_hash", lambda p, **kw: reads.append(p) or real_hash(p, **kw))
    first = file_fingerprint(path, cache)
    assert first == hashlib.blake2b(b"abc\n", digest_size=20).hexdigest() and len(reads) == 1
    assert file_fingerprint(path, cache) == first and len(reads) == 1  # unchanged stat: not read again
    os.utime(path, ns=(old, old + 10**9))  # touch: read again, same fingerprint
    assert file_fingerprint(path, cache) == first and len(reads) == 2
    # Rewritten, then size and mtime put back: the ctime still changed, so it is read again.
    path.write_bytes(b"xyz\n")
    os.utime(path, ns=(old, old + 10**9))
    assert file_fingerprint(path, cache) == file_fingerprint(path) != first
    folder = tmp_path / "hetrec"
    folder.mkdir()
    for name in fingerprints._HETREC_FILES:
        (folder / name).write_text(name)
    fp_folder = file_fingerprint(folder, cache)
    (folder / "tags.dat").write_text("changed")
    assert file_fingerprint(folder, cache) != fp_folder


def test_triples_csv_bare_cr_nul_and_huge_values_are_rejects(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    # "1e2" takes the slow path, which once re-parsed the line with Python's csv module: a bare CR
    # raised _csv.Error and a 200,000-character note "field larger than field limit".
    path = tmp_path / "t.csv"
    path.write_bytes(
        b"user,item,value,note\nu1,A,3,x\nu4,Carriage\rReturn,1e2,y\nu2,B,1e2," + b"z" * 200_000
        + b'\nu3,C,1e300,z\nu5,"Nul\x00",2,q\nu6,"' + b"D" * 1001 + b'",1,q\n'
    )  # fmt: skip
    report = load_triples(conn, path, max_reject_fraction=1.0)
    assert (report.lines_read, report.rows_loaded) == (6, 2)
    assert _plays_by_key(conn) == {("u1", "A"): 3.0, ("u2", "B"): 100.0}
    rejects = _table(conn, "SELECT line_number, reason FROM rejects ORDER BY 1")
    assert rejects == [
        (3, "control character"),
        (5, "plays too large"),
        (6, "control character"),
        (7, "field too long"),
    ]


def test_hetrec_applies_the_same_rules(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    folder = tmp_path / "hetrec"
    folder.mkdir()
    (folder / "user_artists.dat").write_bytes(
        b"userID\tartistID\tweight\n2\t51\t13883\n2\t52\t1e300\n3\t51\t7\n3\t53\t1e-45\n"
    )
    (folder / "artists.dat").write_bytes(
        b"id\tname\turl\tpictureURL\n51\tDuran Duran\tu\tp\n52\tNul\x00\tu\tp\n53\t"
        + b"N" * 1001 + b"\tu\tp\n"
    )  # fmt: skip
    (folder / "tags.dat").write_bytes(b"tagID\ttagValue\n1\tmetal\n2\tpop\rrock\n")
    (folder / "user_taggedartists.dat").write_bytes(
        b"userID\tartistID\ttagID\tday\tmonth\tyear\n2\t51\t1\t1\t4\t2009\n"
    )
    report = load_hetrec(conn, folder, max_reject_fraction=1.0)
    assert (report.lines_read, report.rows_loaded, report.rows_rejected) == (4, 2, 2)
    assert _plays_by_key(conn) == {("2", "51"): 13883.0, ("3", "51"): 7.0}
    assert _table(conn, "SELECT artist_key, name FROM artists") == [("51", "Duran Duran")]
    rejects = _table(conn, "SELECT source_file, line_number, reason FROM rejects ORDER BY 1, 2")
    assert [(Path(f).name, line, reason) for f, line, reason in rejects] == [
        ("artists.dat", 3, "control character"),
        ("artists.dat", 4, "field too long"),
        ("tags.dat", 3, "control character"),
        ("user_artists.dat", 3, "plays too large"),
        ("user_artists.dat", 5, "plays too small"),
    ]


def test_parquet_value_bounds_control_characters_and_long_keys(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    path = tmp_path / "t.parquet"
    conn.execute(
        "COPY (SELECT * FROM (VALUES ('u1', 'a', 1e300), ('u2', 'b', 2.0), ('u3', 'n' || chr(0), 1.0), "
        "('u4', repeat('x', 1001), 1.0), ('u5', 'c', 1e-40), ('u6', 'd', 1e12), ('u7', 'e', 1.5e12)) "
        "t(usr, itm, val)) TO '" + str(path) + "'"
    )
    report = load_triples(
        conn, path, user_column="usr", item_column="itm", value_column="val", max_reject_fraction=1
    )
    assert (report.lines_read, report.rows_loaded) == (7, 2)
    assert _plays_by_key(conn) == {("u2", "b"): 2.0, ("u6", "d"): 1e12}
    rejects = _table(conn, "SELECT line_number, reason FROM rejects ORDER BY 1")
    assert rejects == [
        (1, "plays too large"),
        (3, "control character"),
        (4, "field too long"),
        (5, "plays too small"),
        (7, "plays too large"),
    ]


@pytest.mark.parametrize(
    ("sql_value", "type_name"),
    [("true", "BOOLEAN"), ("'3'", "VARCHAR"), ("DATE '2020-01-01'", "DATE")],
)
def test_parquet_non_numeric_value_column_is_an_error(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path, sql_value: str, type_name: str
) -> None:
    path = tmp_path / "t.parquet"
    conn.execute(f"COPY (SELECT 'u1' AS usr, 'a' AS itm, {sql_value} AS val) TO '{path}'")
    with pytest.raises(LoadError, match=f"column 'val' has type {type_name}") as info:
        load_triples(conn, path, user_column="usr", item_column="itm", value_column="val")
    assert str(path) in str(info.value)


def test_a_folder_where_a_file_belongs_says_so(conn: duckdb.DuckDBPyConnection, tmp_path: Path) -> None:
    with pytest.raises(LoadError, match="is a folder, not a file") as info:
        load_lastfm360k(conn, tmp_path)
    assert "hetrec" not in str(info.value)
    with pytest.raises(LoadError, match="is a folder, not a file; the lastfm360k source reads one file"):
        file_fingerprint(tmp_path, source="lastfm360k")
    a_file = tmp_path / "plays.tsv"
    a_file.write_text("u\tm\ta\t1\n")
    with pytest.raises(LoadError, match="not a folder; pass the unzipped hetrec2011"):
        file_fingerprint(a_file, source="hetrec")


def test_configured_lastfm360k_folder_is_named_as_such(tmp_path: Path) -> None:
    from recsys_assets.pipeline.ingest import source_fingerprint
    from recsys_assets.settings import Settings

    settings = Settings().replace(data={"source": "lastfm360k", "path": str(tmp_path)})
    with pytest.raises(LoadError, match="is a folder, not a file; the lastfm360k source reads one file"):
        source_fingerprint(settings.data, settings.synthetic, tmp_path)


def test_largest_accepted_plays_stay_finite_through_every_weighting(
    conn: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    from recsys_assets.core.weighting import weight_user_items

    path = tmp_path / "big.tsv"
    big = repr(loaders.MAX_PLAYS)
    lines = [f"u{u}\tm\tA{a}\t{big}" for u in range(4) for a in range(3)] + [f"u0\tm\tA0\t{big}"] * 5
    path.write_text("\n".join(lines) + "\n")
    load_lastfm360k(conn, path)
    X = loaders.read_play_matrix(conn)
    assert X.dtype == np.float32 and np.isfinite(X.data).all() and X.data.max() == np.float32(6e12)
    for scheme in ("raw", "bm25", "tfidf", "confidence"):
        for orientation in ("artist_user", "user_artist"):
            W = weight_user_items(X, scheme, orientation, tf="raw", alpha=40.0)
            assert np.isfinite(W.data).all(), (scheme, orientation)
