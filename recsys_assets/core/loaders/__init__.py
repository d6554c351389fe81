"""Load play counts into DuckDB raw tables, validating every line.

Sources: Last.fm-360K TSV, HetRec Last.fm-2k folder, generic ``user,item,value`` triples (any ratings
or play-count CSV/TSV, with or without a header, or Parquet; item names from a column or an items
file), and the synthetic generator. Each load writes the tables of ``sql/raw_schema.sql`` in one transaction (a failed
load leaves the previous tables as they were) and returns a :class:`LoadReport`.

Text files are scanned by a numba kernel over the raw bytes, not by DuckDB's CSV reader, because the
contract is per *physical line*: every line is either loaded or written to ``rejects`` with its 1-based
line number and a reason, and DuckDB's reader renumbers lines around stray ``\\r`` and skips some
malformed lines. The kernel splits lines, validates UTF-8, splits fields, parses the value and interns
user/artist keys into dense codes (open addressing; keys compared byte for byte, so no hash collision
can merge two keys). The file is cut into blocks at line starts and the blocks are scanned on several
threads, each with its own interner; merging the blocks in file order gives every key the code a
serial scan gives it (order of first appearance) and every line its exact number. DuckDB then assigns
the dense ids in SQL (``sql/load_finish.sql``), and the loader sums duplicate pairs and inserts the
plays.

Modules: :mod:`.kernels` (numba line kernels and the rule constants), :mod:`.scanner` (blocks,
threads, merge), :mod:`.staging` (counts, staging tables, the publishing transaction),
:mod:`.sources` (the music sources), :mod:`.triples` (the generic loader), :mod:`.fingerprints`
(content fingerprints of inputs).

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
* ``min_value`` (``[data] min_value``, default 0 = off): a valid line whose value is below it is not a
  positive (a rating of 1 out of 5 says the user did *not* like the item). It is neither rejected nor
  loaded into ``plays``; ``rows_below_min_value`` counts such lines. The rule applies per line, before
  duplicates are summed; users and items left without any positive are not loaded.
* Conservation: ``lines_read == rows_loaded + rows_rejected`` (header lines are not counted).
"""

from recsys_assets.core.loaders.fingerprints import file_fingerprint
from recsys_assets.core.loaders.kernels import MAX_FIELD_BYTES, MAX_PLAYS, MIN_PLAYS, REASONS
from recsys_assets.core.loaders.sources import load_hetrec, load_lastfm360k, load_synthetic
from recsys_assets.core.loaders.staging import (
    LoadError,
    LoadReport,
    raw_schema_sql,
    read_play_matrix,
)
from recsys_assets.core.loaders.triples import DEFAULT_COLUMNS, Column, load_triples

__all__ = [
    "DEFAULT_COLUMNS",
    "Column",
    "MAX_FIELD_BYTES",
    "MAX_PLAYS",
    "MIN_PLAYS",
    "REASONS",
    "LoadError",
    "LoadReport",
    "file_fingerprint",
    "load_hetrec",
    "load_lastfm360k",
    "load_synthetic",
    "load_triples",
    "raw_schema_sql",
    "read_play_matrix",
]
