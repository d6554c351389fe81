"""The line scanner: numba kernels that split, validate and intern the lines of a delimited text
file, run on blocks of the file on several threads and merged in file order.

The line rules are listed in :mod:`recsys_assets.core.loaders`; a key's code is its rank of first
appearance in the file, and a reject's line number its 1-based physical line, whatever the thread
count or block size.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recsys_assets.core.loaders.kernels import (
    _CODE,
    _OK,
    _SLOW,
    MAX_PLAYS,
    MIN_PLAYS,
    REASONS,
    _merge_keys,
    _merge_mbid,
    _rehash,
    _scan_chunk,
    _split_fields,
)
from recsys_assets.core.threads import resolve_threads

# 64 MiB blocks: the serial merge costs per distinct key per block, so fewer, larger blocks merge
# faster (40 % less merge CPU time than 32 MiB blocks on a 600 MB sample of the benchmark file).
_CHUNK_BYTES = 64 << 20
_RAW_LINE_MAX = 1000  # characters of a rejected line kept in `rejects`


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


def _scan_file(
    path: Path,
    layout: _Layout,
    header: bool = False,
    threads: int | None = None,
    progress: Callable[..., None] | None = None,
) -> _Scan:
    """Scan a delimited text file line by line (see the module docstring for the rules).

    Blocks of ``_CHUNK_BYTES`` (cut at line ends) are scanned on ``threads`` worker threads (see
    :func:`~recsys_assets.core.threads.resolve_threads`) and merged in file order; at most one block
    more than there are threads is in flight, bounding memory. Results do not depend on the thread
    count or the block size: the same codes, values, mbids and numbered rejects as a serial scan.
    ``progress`` (e.g. a :class:`recsys_assets.progress.Progress`) is called after each merged block as
    ``progress(bytes_scanned, file_bytes, lines=lines_scanned)``.
    """
    n_threads = resolve_threads(threads)
    merge = _Merge(first_line=2 if header else 1)
    size = path.stat().st_size
    scanned = 0

    def add(block: Future[_Block], n_bytes: int) -> None:
        nonlocal scanned
        merge.add(block.result())
        scanned += n_bytes
        if progress is not None:
            progress(scanned, size, lines=merge.lines_read)

    with ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="scan") as pool:
        pending: deque[tuple[Future[_Block], int]] = deque()
        for data, end in _line_blocks(path, header):
            pending.append((pool.submit(_scan_block, data, end, layout), end))
            if len(pending) > n_threads:
                add(*pending.popleft())
        while pending:
            add(*pending.popleft())
    return merge.result(path, layout.quoted)
