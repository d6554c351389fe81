"""Load play counts into DuckDB raw tables, validating every line.

Sources: Last.fm-360K TSV, HetRec Last.fm-2k folder, generic ``user,item,value`` CSV/Parquet, and the
synthetic generator. Each load writes the tables of ``sql/raw_schema.sql`` in one transaction (a failed
load leaves the previous tables as they were) and returns a :class:`LoadReport`.

Text files are scanned by a numba kernel over the raw bytes, not by DuckDB's CSV reader, because the
contract is per *physical line*: every line is either loaded or written to ``rejects`` with its 1-based
line number and a reason, and DuckDB's reader renumbers lines around stray ``\\r`` and skips some
malformed lines. The kernel splits lines, validates UTF-8, splits fields, parses the value and interns
user/artist keys into dense codes (open addressing; keys compared byte for byte, so no hash collision
can merge two keys). The file is cut into blocks at line starts and the blocks are scanned on several
threads, each with its own interner; merging the blocks in file order gives every key the code a
serial scan gives it (order of first appearance) and every line its exact number. DuckDB then does
the id assignment and duplicate merging in SQL (``sql/load_finish.sql``).

Line rules (text sources; the Parquet loader applies the same ones per row):

* ``\\n`` ends a line; one trailing ``\\r`` is dropped (CRLF files load like LF files); a UTF-8 BOM at
  the start of the file is skipped.
* A line with invalid UTF-8 is **rejected** ("invalid UTF-8"), not repaired: guessing an encoding could
  merge or split artists silently. (HetRec's ``tags.dat`` is Latin-1 by specification and decoded so.)
* A line with an ASCII control character other than TAB (NUL, a bare ``\\r`` inside the line, ESC,
  DEL, ...) is rejected ("control character"): such bytes are never part of a name, and escaping them
  would invent keys the source does not contain.
* A user key, artist name or mbid longer than ``MAX_FIELD_BYTES`` (1,000 bytes of UTF-8) is rejected
  ("field too long").
* Blank lines (only spaces) are rejected as "empty line"; a field of only spaces counts as empty.
* Plays must be a finite number in ``[MIN_PLAYS, MAX_PLAYS]`` = [1.18e-38, 1e12]: zero plays are
  rejected ("zero plays", a listen count of 0 says nothing about taste), as are negative, NaN/inf and
  non-numeric values, and values the float32 matrices downstream cannot hold ("plays too large",
  "plays too small"; see ``MAX_PLAYS`` for the bound).
* Duplicate (user, artist) lines are summed; ``duplicates_merged`` counts the lines merged away.
* Conservation: ``lines_read == rows_loaded + rows_rejected`` (header lines are not counted).
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import math
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import duckdb
import numba
import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.core.synthetic import SyntheticPlays
from recsys_assets.core.threads import resolve_threads

_OK = 0
_SLOW = 100  # value needs Python's float() to decide (exponent, nan, inf, long mantissa, ...)
REASONS: dict[int, str] = {
    1: "empty line",
    2: "wrong field count",
    3: "invalid UTF-8",
    4: "empty user",
    5: "empty artist",
    6: "empty plays",
    7: "non-numeric plays",
    8: "negative plays",
    9: "non-finite plays",
    10: "zero plays",
    11: "bad quoting",
    12: "control character",
    13: "field too long",
    14: "plays too large",
    15: "plays too small",
}
_CODE = {reason: code for code, reason in REASONS.items()}

# Plays must lie in [MIN_PLAYS, MAX_PLAYS]. Above: duplicates are summed, and a pair summed over a
# whole file stays below lines x 1e12 < 1e27 for any file under a petabyte, which leaves float32
# (max 3.4e38) more than 1e11 of headroom for what multiplies a play count downstream: BM25's
# (k1 + 1) * idf, TF-IDF's idf <= log(rows), confidence 1 + alpha * x and ALS's alpha * weight.
# Below: float32's smallest normal number; smaller values vanish or turn subnormal in the float32
# matrices.
MAX_PLAYS = 1e12
MIN_PLAYS = float(np.finfo(np.float32).tiny)
# Longest user key, artist name or mbid kept, in bytes (UTF-8 as written): a key is an identifier,
# not a document, and everything that prints names (the CLI, the catalog) stays readable.
MAX_FIELD_BYTES = 1000

_CHUNK_BYTES = 32 << 20
# The valid lines of a load: (user code, artist code, plays) arrays, codes into the staged key tables.
_Pairs = tuple[np.ndarray, np.ndarray, np.ndarray]
_RAW_LINE_MAX = 1000  # characters of a rejected line kept in `rejects`
_HETREC_FILES = ("user_artists.dat", "artists.dat", "tags.dat", "user_taggedartists.dat")


class LoadError(ValueError):
    """A source could not be loaded; the message names the file, where, and what to do."""


@dataclass(frozen=True)
class LoadReport:
    """What one load did. ``lines_read == rows_loaded + rows_rejected``; ``n_plays`` is the number of
    (user, artist) rows after summing duplicates, so ``duplicates_merged == rows_loaded - n_plays``.
    ``extra`` holds source-specific counts (HetRec tags)."""

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


def sql_dir() -> Path:
    """The repository's ``sql/`` folder (the project is installed editable)."""
    return Path(__file__).resolve().parents[2] / "sql"


def raw_schema_sql() -> str:
    """DDL of the raw tables (``sql/raw_schema.sql``)."""
    return (sql_dir() / "raw_schema.sql").read_text(encoding="utf-8")


# --------------------------------------------------------------------------------------------------
# numba kernels (``nogil``: blocks of one file are scanned on several threads at once)


@numba.njit(cache=True, nogil=True)
def _fnv1a(buf, s, e):  # pragma: no cover - compiled
    h = np.uint64(14695981039346656037)
    prime = np.uint64(1099511628211)
    for i in range(s, e):
        h = (h ^ np.uint64(buf[i])) * prime
    return h


@numba.njit(cache=True, nogil=True)
def _check_bytes(buf, s, e):  # pragma: no cover - compiled
    """0 if buf[s:e] is valid UTF-8 free of ASCII control characters (TAB allowed), else the reason
    code: 3 (invalid UTF-8, reported first) or 12 (control character)."""
    control = False
    i = s
    while i < e:
        c = buf[i]
        if c < 0x80:
            if (c < 32 and c != 9) or c == 127:
                control = True
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            n = 1
        elif 0xE0 <= c <= 0xEF:
            n = 2
        elif 0xF0 <= c <= 0xF4:
            n = 3
        else:
            return 3
        if i + n >= e:
            return 3  # truncated sequence
        c1 = buf[i + 1]
        if c1 < 0x80 or c1 > 0xBF:
            return 3
        # Overlong forms, UTF-16 surrogates and code points above U+10FFFF.
        if (
            (c == 0xE0 and c1 < 0xA0)
            or (c == 0xED and c1 > 0x9F)
            or (c == 0xF0 and c1 < 0x90)
            or (c == 0xF4 and c1 > 0x8F)
        ):
            return 3
        for k in range(2, n + 1):
            ck = buf[i + k]
            if ck < 0x80 or ck > 0xBF:
                return 3
        i += n + 1
    return 12 if control else 0


@numba.njit(cache=True, nogil=True)
def _blank(buf, s, e):  # pragma: no cover - compiled
    for i in range(s, e):  # noqa: SIM110 - a plain loop compiles to the tightest code in numba
        if buf[i] != 32:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _parse_value(buf, s, e):  # pragma: no cover - compiled
    """(status, value) for a plain decimal ``[+-]digits[.digits]``; anything else -> _SLOW."""
    while s < e and buf[s] == 32:
        s += 1
    while e > s and buf[e - 1] == 32:
        e -= 1
    if s == e:
        return 6, 0.0
    negative = False
    if buf[s] == 43 or buf[s] == 45:  # '+' or '-'
        negative = buf[s] == 45
        s += 1
    mantissa = 0
    n_digits = 0
    n_frac = 0
    seen_dot = False
    for i in range(s, e):
        c = buf[i]
        if 48 <= c <= 57:
            mantissa = mantissa * 10 + (c - 48)
            n_digits += 1
            if seen_dot:
                n_frac += 1
        elif c == 46 and not seen_dot:
            seen_dot = True
        else:
            return _SLOW, 0.0
    # Exact while mantissa < 2**53 and 10**n_frac is exact (n_frac <= 22): one correctly rounded division.
    if n_digits == 0 or n_digits > 15 or n_frac > 22:
        return _SLOW, 0.0
    value = mantissa / 10.0**n_frac
    if value == 0.0:
        return 10, 0.0
    if negative:
        return 8, 0.0
    if value > MAX_PLAYS:
        return 14, 0.0
    return _OK, value  # >= 1e-22 > MIN_PLAYS: the fast path cannot produce a too-small value


@numba.njit(cache=True, nogil=True)
def _intern(buf, s, e, tab, hashes, off, arena, cnt):  # pragma: no cover - compiled
    """Code of key buf[s:e]; a new key gets the next code and its bytes are appended to ``arena``.

    Codes are given in order of first appearance, so they do not depend on the table's size."""
    h = _fnv1a(buf, s, e)
    mask = tab.shape[0] - 1
    slot = np.int64(h & np.uint64(mask))
    length = e - s
    while True:
        code = tab[slot]
        if code < 0:
            code = cnt[0]
            tab[slot] = code
            hashes[code] = h
            start = cnt[1]
            arena[start : start + length] = buf[s:e]
            off[code] = start
            off[code + 1] = start + length
            cnt[0] += 1
            cnt[1] += length
            return code
        if hashes[code] == h and off[code + 1] - off[code] == length:
            same = True
            base = off[code]
            for k in range(length):
                if arena[base + k] != buf[s + k]:
                    same = False
                    break
            if same:
                return code
        slot = (slot + 1) & mask


@numba.njit(cache=True, nogil=True)
def _rehash(hashes, n, cap):  # pragma: no cover - compiled
    tab = np.full(cap, -1, dtype=np.int64)
    mask = cap - 1
    for code in range(n):
        slot = np.int64(hashes[code] & np.uint64(mask))
        while tab[slot] >= 0:
            slot = (slot + 1) & mask
        tab[slot] = code
    return tab


@numba.njit(cache=True, nogil=True)
def _split_fields(buf, s, e, delim, quoted, spans):  # pragma: no cover - compiled
    """Fill spans[k] = (start, end) of field k (inside quotes if quoted). Returns the field count,
    or -1 for bad quoting. Fields beyond spans' capacity are counted, not stored."""
    n = 0
    i = s
    while True:
        if quoted and i < e and buf[i] == 34:
            j = i + 1
            while True:
                if j >= e:
                    return -1  # unterminated quote
                if buf[j] == 34:
                    if j + 1 < e and buf[j + 1] == 34:
                        j += 2
                        continue
                    break
                j += 1
            fs, fe = i + 1, j
            i = j + 1
            if i < e and buf[i] != delim:
                return -1  # text after the closing quote
        else:
            fs = i
            while i < e and buf[i] != delim:
                if quoted and buf[i] == 34:
                    return -1  # quote inside an unquoted field
                i += 1
            fe = i
        if n < spans.shape[0]:
            spans[n, 0] = fs
            spans[n, 1] = fe
        n += 1
        if i >= e:
            return n
        i += 1  # skip the delimiter


@numba.njit(cache=True, nogil=True)
def _same_bytes(buf, s1, e1, s2, e2):  # pragma: no cover - compiled
    if e1 - s1 != e2 - s2:
        return False
    for k in range(e1 - s1):  # noqa: SIM110 - a plain loop compiles to the tightest code in numba
        if buf[s1 + k] != buf[s2 + k]:
            return False
    return True


@numba.njit(cache=True, nogil=True)
def _scan_chunk(
    buf,
    pos,
    end,
    row,
    fields,
    quoted,
    status,
    line_start,
    line_end,
    ucode,
    acode,
    value,
    u_tab,
    u_hash,
    u_off,
    u_arena,
    u_cnt,
    a_tab,
    a_hash,
    a_off,
    a_arena,
    a_cnt,
    m_span,
    m_arena,
    m_cnt,
):  # pragma: no cover - compiled
    """Scan lines of buf[pos:end] (end is a line end or the end of the file).

    ``fields`` = (delimiter, n_fields, user field, artist field, value field, mbid field or -1).
    Per line (index ``row`` onwards) writes status (0 ok, reason code, or _SLOW), the line's byte
    span, and for ok/_SLOW lines the user/artist codes and value. Stops early, before a line, when an
    interner might overflow, returning (pos, row, need) with need's bits saying what to grow:
    1/2 user/artist table, 4/8/16 user/artist/mbid arena. need == 0 means buf[pos:end] is done.
    """
    delim, n_fields, fu, fa, fv, fm = fields[0], fields[1], fields[2], fields[3], fields[4], fields[5]
    spans = np.empty((64, 2), dtype=np.int64)
    # Files are usually grouped by user: a line whose user field equals the previous valid line's
    # reuses its code without hashing.
    prev_us, prev_ue, prev_code = np.int64(0), np.int64(-1), np.int64(0)
    while pos < end:
        # One pass finds the line's end and, in an unquoted file, its fields; a line of printable
        # ASCII and delimiters ("plain", the common case) needs no UTF-8 or control-character check.
        e = pos
        n = 0
        fs = pos
        plain = not quoted
        while e < end:
            c = buf[e]
            if c == 10:
                break
            if c == delim:
                if n < spans.shape[0]:
                    spans[n, 0] = fs
                    spans[n, 1] = e
                n += 1
                fs = e + 1
            elif (c < 32 or c > 126) and not (c == 13 and (e + 1 == end or buf[e + 1] == 10)):
                plain = False
            e += 1
        next_pos = e + 1
        length = e - pos
        need = 0
        if 2 * (u_cnt[0] + 1) > u_tab.shape[0]:
            need |= 1
        if 2 * (a_cnt[0] + 1) > a_tab.shape[0]:
            need |= 2
        if u_cnt[1] + length > u_arena.shape[0]:
            need |= 4
        if a_cnt[1] + length > a_arena.shape[0]:
            need |= 8
        if m_cnt[0] + length > m_arena.shape[0]:
            need |= 16
        if need:
            return pos, row, need
        s = pos
        if e > s and buf[e - 1] == 13:
            e -= 1
        if n < spans.shape[0]:
            spans[n, 0] = fs
            spans[n, 1] = max(fs, e)
        n += 1
        line_start[row] = pos
        line_end[row] = e
        if _blank(buf, s, e):
            code = 1
        elif plain:
            code = 0
        else:
            code = _check_bytes(buf, s, e)
            if code == 0:
                n = _split_fields(buf, s, e, delim, quoted, spans)
        if code == 0:
            if n < 0:
                code = 11
            elif n != n_fields:
                code = 2
            elif _blank(buf, spans[fu, 0], spans[fu, 1]):
                code = 4
            elif _blank(buf, spans[fa, 0], spans[fa, 1]):
                code = 5
            elif (
                spans[fu, 1] - spans[fu, 0] > MAX_FIELD_BYTES
                or spans[fa, 1] - spans[fa, 0] > MAX_FIELD_BYTES
                or (fm >= 0 and spans[fm, 1] - spans[fm, 0] > MAX_FIELD_BYTES)
            ):
                code = 13
            else:
                code, v = _parse_value(buf, spans[fv, 0], spans[fv, 1])
                if code == _OK or code == _SLOW:  # noqa: SIM109 - numba
                    value[row] = v
                    us, ue = spans[fu, 0], spans[fu, 1]
                    if not _same_bytes(buf, us, ue, prev_us, prev_ue):
                        prev_code = _intern(buf, us, ue, u_tab, u_hash, u_off, u_arena, u_cnt)
                        prev_us, prev_ue = us, ue
                    ucode[row] = prev_code
                    ac = _intern(buf, spans[fa, 0], spans[fa, 1], a_tab, a_hash, a_off, a_arena, a_cnt)
                    acode[row] = ac
                    if fm >= 0 and m_span[ac, 0] < 0 and not _blank(buf, spans[fm, 0], spans[fm, 1]):
                        ms, me = spans[fm, 0], spans[fm, 1]
                        start = m_cnt[0]
                        m_arena[start : start + me - ms] = buf[ms:me]
                        m_span[ac, 0] = start
                        m_span[ac, 1] = start + me - ms
                        m_cnt[0] += me - ms
        status[row] = code
        row += 1
        pos = next_pos
    return pos, row, 0


@numba.njit(cache=True, nogil=True)
def _merge_keys(l_arena, l_off, l_hash, n_local, i, tab, hashes, off, arena, cnt, out):  # pragma: no cover
    """Intern the keys ``i..n_local-1`` of a block's interner into the file's interner, in code order,
    writing their file-wide codes to ``out``. Returns (next key, need) like :func:`_scan_chunk`
    (need bit 1: grow the table, 4: grow the arena)."""
    while i < n_local:
        s, e = l_off[i], l_off[i + 1]
        if 2 * (cnt[0] + 1) > tab.shape[0]:
            return i, 1
        if cnt[1] + (e - s) > arena.shape[0]:
            return i, 4
        h = l_hash[i]
        mask = tab.shape[0] - 1
        slot = np.int64(h & np.uint64(mask))
        length = e - s
        while True:
            code = tab[slot]
            if code < 0:
                code = cnt[0]
                tab[slot] = code
                hashes[code] = h
                start = cnt[1]
                arena[start : start + length] = l_arena[s:e]
                off[code] = start
                off[code + 1] = start + length
                cnt[0] += 1
                cnt[1] += length
                break
            if hashes[code] == h and off[code + 1] - off[code] == length:
                same = True
                base = off[code]
                for k in range(length):
                    if arena[base + k] != l_arena[s + k]:
                        same = False
                        break
                if same:
                    break
            slot = (slot + 1) & mask
        out[i] = code
        i += 1
    return i, 0


@numba.njit(cache=True, nogil=True)
def _merge_mbid(amap, l_span, l_arena, n_local, i, g_span, g_arena, g_cnt):  # pragma: no cover - compiled
    """Give each file-wide artist without an mbid the block's first one (blocks merge in file order,
    so the file's first non-empty mbid wins). Returns (next key, bytes needed) when the arena is full,
    else (n_local, 0)."""
    while i < n_local:
        s = l_span[i, 0]
        g = amap[i]
        if s >= 0 and g_span[g, 0] < 0:
            length = l_span[i, 1] - s
            if g_cnt[0] + length > g_arena.shape[0]:
                return i, length
            start = g_cnt[0]
            g_arena[start : start + length] = l_arena[s : s + length]
            g_span[g, 0] = start
            g_span[g, 1] = start + length
            g_cnt[0] += length
        i += 1
    return n_local, 0


# --------------------------------------------------------------------------------------------------
# Python side of the scan


def _decode_spans(arena: np.ndarray, starts: np.ndarray, ends: np.ndarray, unquote: bool) -> list[str]:
    """Strings ``arena[starts[i]:ends[i]]`` of an arena of whole UTF-8 keys: the arena is decoded once
    and sliced at character offsets (a byte offset minus the continuation bytes before it), several
    times faster than decoding each key."""
    text = arena.tobytes().decode("utf-8")
    continuation = np.concatenate([[0], np.cumsum((arena & 0xC0) == 0x80)])
    first = (starts - continuation[starts]).tolist()
    last = (ends - continuation[ends]).tolist()
    out = [text[a:b] for a, b in zip(first, last, strict=True)]
    if unquote:
        out = [k.replace('""', '"') for k in out]
    return out


class _Interner:
    """Growable state of one key interner (arrays shared with the numba kernels)."""

    def __init__(self, cap: int = 1 << 16, arena: int = 1 << 20) -> None:
        self.tab = np.full(cap, -1, dtype=np.int64)
        self.hash = np.zeros(cap // 2 + 1, dtype=np.uint64)
        self.off = np.zeros(cap // 2 + 2, dtype=np.int64)
        self.arena = np.zeros(arena, dtype=np.uint8)
        self.cnt = np.zeros(2, dtype=np.int64)  # (n keys, arena bytes used)

    def grow_table(self) -> None:
        cap = 2 * self.tab.shape[0]
        n = int(self.cnt[0])
        self.tab = _rehash(self.hash, n, cap)
        self.hash = np.concatenate([self.hash, np.zeros(cap // 2 + 1 - self.hash.shape[0], np.uint64)])
        self.off = np.concatenate([self.off, np.zeros(cap // 2 + 2 - self.off.shape[0], np.int64)])

    def grow_arena(self, at_least: int) -> None:
        size = max(2 * self.arena.shape[0], int(self.cnt[1]) + at_least)
        self.arena = np.concatenate([self.arena, np.zeros(size - self.arena.shape[0], np.uint8)])

    def merge(self, block: _Interner) -> np.ndarray:
        """Intern ``block``'s keys (in its code order) here; returns the int32 map block code -> code."""
        n = int(block.cnt[0])
        out = np.empty(n, dtype=np.int32)
        i = 0
        while True:
            i, need = _merge_keys(
                block.arena, block.off, block.hash, n, i, self.tab, self.hash, self.off, self.arena, self.cnt, out
            )  # fmt: skip
            if not need:
                return out
            if need & 1:
                self.grow_table()
            if need & 4:
                self.grow_arena(int(block.off[i + 1] - block.off[i]))

    def keys(self, unquote: bool) -> list[str]:
        """The keys in code order, decoded (``unquote``: ``""`` -> ``"``)."""
        n = int(self.cnt[0])
        return _decode_spans(self.arena[: self.cnt[1]], self.off[:n], self.off[1 : n + 1], unquote)


class _Mbids:
    """First non-empty mbid per artist code: spans into a byte arena (-1 where none yet)."""

    def __init__(self, n: int = 1 << 15, arena: int = 1 << 16) -> None:
        self.span = np.full((n, 2), -1, dtype=np.int64)
        self.arena = np.zeros(arena, dtype=np.uint8)
        self.cnt = np.zeros(1, dtype=np.int64)

    def cover(self, n: int) -> None:
        """Make room for artist codes below ``n``."""
        if self.span.shape[0] < n:
            grown = np.full((max(n, 2 * self.span.shape[0]), 2), -1, dtype=np.int64)
            grown[: self.span.shape[0]] = self.span
            self.span = grown

    def grow_arena(self, at_least: int) -> None:
        size = max(2 * self.arena.shape[0], int(self.cnt[0]) + at_least)
        self.arena = np.concatenate([self.arena, np.zeros(size - self.arena.shape[0], np.uint8)])

    def merge(self, amap: np.ndarray, block: _Mbids, n_artists: int) -> None:
        """Take ``block``'s mbids (``amap``: block artist code -> code below ``n_artists``)."""
        self.cover(n_artists)
        i = 0
        while True:
            i, need = _merge_mbid(
                amap, block.span, block.arena, amap.shape[0], i, self.span, self.arena, self.cnt
            )
            if not need:
                return
            self.grow_arena(int(need))

    def values(self, n: int, unquote: bool) -> list[str | None]:
        """The mbid of artist codes ``0..n-1``, None where none was seen."""
        span = self.span[:n]
        has = span[:, 0] >= 0
        found = iter(_decode_spans(self.arena[: self.cnt[0]], span[has, 0], span[has, 1], unquote))
        return [next(found) if h else None for h in has.tolist()]


@dataclass(frozen=True)
class _Layout:
    """What a text file's lines look like: delimiter, field count and which field is what."""

    delimiter: str
    n_fields: int
    user_field: int
    artist_field: int
    value_field: int
    mbid_field: int = -1
    quoted: bool = False

    def kernel_fields(self) -> np.ndarray:
        return np.array(
            [ord(self.delimiter), self.n_fields, self.user_field, self.artist_field, self.value_field,
             self.mbid_field],
            dtype=np.int64,
        )  # fmt: skip


@dataclass
class _Block:
    """One block's scan, in the block's own key codes (first appearance within the block)."""

    n_lines: int
    ucode: np.ndarray  # int32 (valid lines,)
    acode: np.ndarray  # int32 (valid lines,)
    value: np.ndarray  # float64 (valid lines,)
    users: _Interner
    artists: _Interner
    mbids: _Mbids
    rejects: list[tuple[int, str, str]]  # (0-based line within the block, reason, raw line)


@dataclass
class _Scan:
    """Result of scanning one delimited text file."""

    path: Path
    lines_read: int
    ucode: np.ndarray  # int32 (rows_loaded,)
    acode: np.ndarray  # int32 (rows_loaded,)
    value: np.ndarray  # float64 (rows_loaded,)
    user_keys: list[str]
    artist_keys: list[str]
    artist_mbid: list[str | None]
    rejects: list[tuple[int, str, str]]  # (line number, reason, raw line)

    @property
    def rows_loaded(self) -> int:
        return int(self.value.shape[0])


def _slow_value(raw: bytes) -> tuple[int, float]:
    """Status and value of a plays field the kernel's fast path could not decide."""
    try:
        text = raw.decode("ascii").strip(" ")
    except UnicodeDecodeError:
        return _CODE["non-numeric plays"], 0.0
    # float() also accepts "1_000" and non-ASCII digits; a plays column should not.
    if "_" in text:
        return _CODE["non-numeric plays"], 0.0
    try:
        v = float(text)
    except ValueError:
        return _CODE["non-numeric plays"], 0.0
    if not math.isfinite(v):
        return _CODE["non-finite plays"], 0.0
    if v == 0.0:
        return _CODE["zero plays"], 0.0
    if v < 0.0:
        return _CODE["negative plays"], 0.0
    if v > MAX_PLAYS:
        return _CODE["plays too large"], 0.0
    if v < MIN_PLAYS:
        return _CODE["plays too small"], 0.0
    return _OK, v


def _raw_text(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")[:_RAW_LINE_MAX]


def _line_blocks(path: Path, header: bool) -> Iterator[tuple[bytes, int]]:
    """Blocks ``(data, end)`` of about ``_CHUNK_BYTES`` whose lines are ``data[:end]``: every block
    starts at a line start and ends after a ``\\n`` (the file's last block may lack it). The BOM and,
    with ``header``, the first line are left out. Each block is read from its own file offset, so no
    bytes are copied from one block to the next."""
    with open(path, "rb") as f:
        offset = 3 if f.read(3) == b"\xef\xbb\xbf" else 0
        f.seek(offset)
        while header:  # skip the header line, however long it is
            piece = f.read(_CHUNK_BYTES)
            cut = piece.find(b"\n")
            if cut >= 0:
                offset += cut + 1
                break
            if len(piece) < _CHUNK_BYTES:
                return  # only a header, without a newline
            offset += len(piece)
        while True:
            f.seek(offset)
            data = f.read(_CHUNK_BYTES)
            if not data:
                return
            at_eof = len(data) < _CHUNK_BYTES
            cut = data.rfind(b"\n")
            while cut < 0 and not at_eof:  # a line longer than a block: read on to its end
                more = f.read(_CHUNK_BYTES)
                at_eof = len(more) < _CHUNK_BYTES
                found = more.find(b"\n")
                cut = len(data) + found if found >= 0 else -1
                data += more
            if at_eof:
                yield data, len(data)
                return
            yield data, cut + 1
            offset += cut + 1


def _scan_block(data: bytes, end: int, layout: _Layout) -> _Block:
    """Scan the lines of ``data[:end]`` with block-local interners (runs on a worker thread: the
    kernels release the GIL)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    n_lines = 0 if end == 0 else data.count(b"\n", 0, end) + (data[end - 1] != 10)
    status = np.zeros(n_lines, dtype=np.int8)
    line_start = np.zeros(n_lines, dtype=np.int64)
    line_end = np.zeros(n_lines, dtype=np.int64)
    ucode = np.zeros(n_lines, dtype=np.int32)
    acode = np.zeros(n_lines, dtype=np.int32)
    value = np.zeros(n_lines, dtype=np.float64)
    # Sized so that a block of ordinary lines rarely grows its tables (growth changes no code).
    cap = 1 << max(10, int(n_lines).bit_length())
    users, artists = _Interner(cap, 1 << 16), _Interner(cap, 1 << 16)
    mbids = _Mbids(artists.hash.shape[0])
    fields = layout.kernel_fields()
    pos, row = 0, 0
    while True:
        pos, row, need = _scan_chunk(
            buf, pos, end, row, fields, layout.quoted, status, line_start, line_end, ucode, acode, value,
            users.tab, users.hash, users.off, users.arena, users.cnt,
            artists.tab, artists.hash, artists.off, artists.arena, artists.cnt,
            mbids.span, mbids.arena, mbids.cnt,
        )  # fmt: skip
        if not need:
            break
        longest = end  # a line can be no longer than the block
        if need & 1:
            users.grow_table()
        if need & 2:
            artists.grow_table()
            mbids.cover(artists.hash.shape[0])
        if need & 4:
            users.grow_arena(min(longest, 1 << 20))
        if need & 8:
            artists.grow_arena(min(longest, 1 << 20))
        if need & 16:
            mbids.grow_arena(min(longest, 1 << 20))
    spans = np.empty((layout.n_fields, 2), dtype=np.int64)
    for i in np.flatnonzero(status == _SLOW).tolist():
        _split_fields(buf, line_start[i], line_end[i], ord(layout.delimiter), layout.quoted, spans)
        vs, ve = spans[layout.value_field]
        status[i], value[i] = _slow_value(data[vs:ve])
    rejects = [
        (i, REASONS[int(status[i])], _raw_text(data[line_start[i] : line_end[i]]))
        for i in np.flatnonzero(status != _OK).tolist()
    ]
    ok = status == _OK
    return _Block(n_lines, ucode[ok], acode[ok], value[ok], users, artists, mbids, rejects)


class _Merge:
    """Folds blocks, in file order, into file-wide codes, values, mbids and numbered rejects.

    A key's file-wide code is its rank of first appearance in the file, exactly as a serial scan
    gives it, because blocks are merged in file order and each block lists its keys in order of
    first appearance within the block."""

    def __init__(self, first_line: int) -> None:
        self.users, self.artists, self.mbids = _Interner(), _Interner(), _Mbids()
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.rejects: list[tuple[int, str, str]] = []
        self.line_no = first_line  # number of the next block's first line
        self.lines_read = 0

    def add(self, block: _Block) -> None:
        umap = self.users.merge(block.users)
        amap = self.artists.merge(block.artists)
        self.mbids.merge(amap, block.mbids, int(self.artists.cnt[0]))
        self.parts.append((umap[block.ucode], amap[block.acode], block.value))
        self.rejects.extend((self.line_no + i, reason, raw) for i, reason, raw in block.rejects)
        self.line_no += block.n_lines
        self.lines_read += block.n_lines

    def result(self, path: Path, unquote: bool) -> _Scan:
        def joined(k: int, dtype: type) -> np.ndarray:
            return np.concatenate([p[k] for p in self.parts]) if self.parts else np.zeros(0, dtype)

        return _Scan(
            path=path,
            lines_read=self.lines_read,
            ucode=joined(0, np.int32),
            acode=joined(1, np.int32),
            value=joined(2, np.float64),
            user_keys=self.users.keys(unquote),
            artist_keys=self.artists.keys(unquote),
            artist_mbid=self.mbids.values(int(self.artists.cnt[0]), unquote),
            rejects=self.rejects,
        )


def _scan_file(path: Path, layout: _Layout, header: bool = False, threads: int | None = None) -> _Scan:
    """Scan a delimited text file line by line (see the module docstring for the rules).

    Blocks of ``_CHUNK_BYTES`` (cut at line ends) are scanned on ``threads`` worker threads (see
    :func:`~recsys_assets.core.threads.resolve_threads`) and merged in file order; at most two
    blocks per thread are in flight, bounding memory. Results do not depend on the thread count or
    the block size: the same codes, values, mbids and numbered rejects as a serial scan.
    """
    n_threads = resolve_threads(threads)
    merge = _Merge(first_line=2 if header else 1)
    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="scan") as pool:
        pending: deque[Future[_Block]] = deque()
        for data, end in _line_blocks(path, header):
            pending.append(pool.submit(_scan_block, data, end, layout))
            if len(pending) > 2 * n_threads:
                merge.add(pending.popleft().result())
        while pending:
            merge.add(pending.popleft().result())
    return merge.result(path, layout.quoted)


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
) -> _Pairs:
    """Create the TEMP key tables that ``sql/load_finish.sql`` reads; returns the plays as codes into
    them, for :func:`_publish`.

    Unless ``keep_all_keys``, keys without a valid play (a key whose lines were all rejected after it
    was interned) are dropped and the codes renumbered.
    """
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
    them) in one transaction, and log the load."""
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
        conn.execute((sql_dir() / "load_finish.sql").read_text(encoding="utf-8"))
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
            [source, str(source_file), lines_read, rows_loaded, rejected, rows_loaded - n_plays]
            + [n_users, n_artists, n_plays],
        )
    return LoadReport(
        source_file=str(source_file),
        lines_read=lines_read,
        rows_loaded=rows_loaded,
        rows_rejected=lines_read - rows_loaded,
        duplicates_merged=rows_loaded - n_plays,
        n_users=n_users,
        n_artists=n_artists,
        n_plays=n_plays,
        reject_reasons=reasons,
    )


def _load_scan(
    conn: duckdb.DuckDBPyConnection, source: str, scan: _Scan, names: list[str | None], max_frac: float
) -> LoadReport:
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
            scan.artist_mbid,
        )
        rejects = [(str(scan.path), line, reason, raw) for line, reason, raw in scan.rejects]
        return _publish(conn, source, scan.path, scan.lines_read, scan.rows_loaded, rejects, reasons, pairs)
    finally:
        _drop_temp(conn)


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
    32 MiB blocks scanned on ``threads`` threads (0/None: all cores); memory is ~16 bytes per valid
    line plus the distinct keys plus two blocks per thread.
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
            extra_sql=(sql_dir() / "load_hetrec_tags.sql").read_text(encoding="utf-8"),
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
    sql = (sql_dir() / "load_parquet_stage.sql").read_text(encoding="utf-8")
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


# --------------------------------------------------------------------------------------------------
# Fingerprints


def _hash_file(path: Path) -> str:
    digest = hashlib.blake2b(digest_size=20)
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            digest.update(block)
    return digest.hexdigest()


def _cached_hash(path: Path, cache: Path | None) -> str:
    """Content hash of one file; with ``cache`` (a JSON file) reused while (size, mtime_ns, inode) hold."""
    if cache is None:
        return _hash_file(path)
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
    key = str(path.resolve())
    try:
        entries = json.loads(cache.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        entries = {}
    entry = entries.get(key)
    if entry is not None and entry.get("stamp") == stamp:
        return entry["digest"]
    digest = _hash_file(path)
    entries[key] = {"stamp": stamp, "digest": digest}
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(entries, sort_keys=True), encoding="utf-8")
    os.replace(tmp, cache)
    return digest


def file_fingerprint(path: str | Path, cache: Path | None = None, source: str | None = None) -> str:
    """Content fingerprint of a source: blake2b-160 of the file's bytes (hex), read in 4 MiB blocks.

    For the ``hetrec`` source (a folder) it is the blake2b of the names and content hashes of the four
    files :func:`load_hetrec` reads; every other ``source`` must be a file. With ``source=None`` a
    folder is taken for HetRec. With ``cache`` (a JSON file), a file whose (size, mtime_ns, inode) is
    unchanged is not read again; a ``touch`` re-hashes and yields the same fingerprint.
    """
    path = Path(path)
    if source == "hetrec" or (source is None and path.is_dir()):
        if not path.is_dir():
            raise LoadError(f"{path}: not a folder; pass the unzipped hetrec2011-lastfm-2k folder")
        digest = hashlib.blake2b(digest_size=20)
        for name in _HETREC_FILES:
            _require_file(path / name, "pass the unzipped hetrec2011-lastfm-2k folder")
            digest.update(f"{name}\0{_cached_hash(path / name, cache)}\0".encode())
        return digest.hexdigest()
    _require_file(path, f"the {source} source reads one file; give its path" if source else "check the path")
    return _cached_hash(path, cache)


def read_play_matrix(conn: duckdb.DuckDBPyConnection) -> sp.csr_matrix:
    """The loaded plays as a users x artists float32 CSR matrix (row = user_id, column = artist_id).

    Shape covers every user and artist id in the ``users`` / ``artists`` tables, so artists without
    plays (kept by the synthetic loader) are empty columns.
    """
    n_users = conn.execute("SELECT coalesce(max(user_id) + 1, 0) FROM users").fetchone()[0]
    n_artists = conn.execute("SELECT coalesce(max(artist_id) + 1, 0) FROM artists").fetchone()[0]
    cols = conn.execute("SELECT user_id, artist_id, plays FROM plays").fetchnumpy()
    X = sp.csr_matrix(
        (cols["plays"].astype(np.float32), (cols["user_id"], cols["artist_id"])), shape=(n_users, n_artists)
    )
    X.sum_duplicates()
    X.sort_indices()
    return X
