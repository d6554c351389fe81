"""The numba kernels of the line scanner (``nogil``: blocks of one file are scanned on several
threads at once) and the line-rule constants they apply. :mod:`.scanner` drives them."""

from __future__ import annotations

import numba
import numpy as np

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


# --------------------------------------------------------------------------------------------------
# Kernels


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
    return _intern_hashed(buf, s, e, _fnv1a(buf, s, e), tab, hashes, off, arena, cnt)


@numba.njit(cache=True, nogil=True)
def _intern_hashed(buf, s, e, h, tab, hashes, off, arena, cnt):  # pragma: no cover - compiled
    """:func:`_intern` for a key whose hash ``h`` (:func:`_fnv1a`) is already known."""
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
        out[i] = _intern_hashed(l_arena, s, e, l_hash[i], tab, hashes, off, arena, cnt)
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
