"""Settings: one TOML file users edit, read into typed, validated dataclasses.

The file is ``$RECSYS_CONFIG`` if set, else ``./recsys.toml`` if present, else built-in defaults.
All data lives under ``$RECSYS_HOME`` (default ``./recsys_home``). ``recsys.example.toml``
documents every setting.

Why settings live in a file and not in Dagster run config: run config never marks an asset stale,
and a later refresh would silently fall back to the defaults. Each asset instead carries a
fingerprint of exactly the settings it reads in its ``code_version`` (:func:`fingerprint`), so
editing one value marks exactly that asset and its descendants unsynced.

Validation is declared next to each field: its type (``int``, ``float``, ``str``, a ``Literal`` of
choices) and, in ``Annotated[...]``, the rule its values obey (:class:`Range`, :class:`MemorySize`, ...).
Every section checks itself when it is built (from the file, by :meth:`Settings.replace`, or by
``dataclasses.replace``), so no invalid value reaches an asset. Floats must always be finite. What
depends on the data (``[lsa] factors`` against the matrix shape, ``[evaluation] k`` against the
catalogue) is checked by the asset that reads it (:func:`check_lsa_factors`, :func:`check_evaluation_k`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
import os
import re
import tomllib
import types
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

SETTINGS_ENV = "RECSYS_CONFIG"
HOME_ENV = "RECSYS_HOME"
DEFAULT_SETTINGS_FILE = "recsys.toml"
DEFAULT_HOME = "recsys_home"


class SettingsError(ValueError):
    """The settings file has an unknown key, a value of the wrong type, or an invalid value."""


class DataDependentSettingError(SettingsError):
    """A setting valid in itself is impossible for the data at hand (e.g. more LSA factors than artists).

    Raised at the start of the asset that reads the setting, naming the file, the key, the value and
    what this data set allows.
    """


# ---------------------------------------------------------------------------------------------------
# Rules a field's values obey, declared in the field's annotation: ``Annotated[int, Range(gt=0)]``.


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


@dataclass(frozen=True)
class Range:
    """Finite numbers within bounds (``None`` = unbounded), or one of ``special`` values that mean
    something of their own (e.g. ``-1`` = the library's default); ``note`` explains them."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    special: tuple[float, ...] = ()
    note: str = ""

    def admits(self, value: Any) -> bool:
        if value in self.special:
            return True
        return (
            math.isfinite(value)
            and (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self, kind: str) -> str:
        low = (
            ("[", ">=", self.ge)
            if self.ge is not None
            else ("(", ">", self.gt)
            if self.gt is not None
            else None
        )
        high = (
            ("]", "<=", self.le)
            if self.le is not None
            else (")", "<", self.lt)
            if self.lt is not None
            else None
        )
        if low and high:
            text = f"{kind} in {low[0]}{_number(low[2])}, {_number(high[2])}{high[0]}"
        elif low or high:
            _, op, bound = low or high  # type: ignore[misc]
            text = f"{kind} {op} {_number(bound)}"
        else:
            text = kind
        if self.special:
            text = " or ".join([*(_number(v) for v in self.special), text])
        return f"{text} ({self.note})" if self.note else text


KiB, MiB, GiB, TiB = 1024, 1024**2, 1024**3, 1024**4
# The units DuckDB's memory_limit understands (case-insensitive): 1000^i and 1024^i bytes.
_SIZE_UNITS = {
    **dict.fromkeys(("b", "byte", "bytes"), 1),
    **dict.fromkeys(("k", "kb", "kilobyte", "kilobytes"), 1000),
    **dict.fromkeys(("m", "mb", "megabyte", "megabytes"), 1000**2),
    **dict.fromkeys(("g", "gb", "gigabyte", "gigabytes"), 1000**3),
    **dict.fromkeys(("t", "tb", "terabyte", "terabytes"), 1000**4),
    "kib": KiB,
    "mib": MiB,
    "gib": GiB,
    "tib": TiB,
}
_SIZE = re.compile(r"\s*((?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?)\s*([a-z%]+)\s*", re.IGNORECASE)


def physical_memory_bytes() -> int | None:
    """This machine's physical memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def parse_size(value: str | float) -> int:
    """Bytes in a memory size written as DuckDB's ``memory_limit`` is: ``"3GiB"``, ``"500MB"``,
    ``"1.5 GB"`` (KB, MB, GB, TB = 1000^i bytes; KiB, MiB, GiB, TiB = 1024^i), ``"50%"`` of physical
    memory; a bare number (not a string) is GiB. Raises ``ValueError`` on anything else."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, int | float):
        size = float(value) * GiB
    else:
        match = _SIZE.fullmatch(value)
        number, unit = (float(match.group(1)), match.group(2).lower()) if match else (math.nan, "")
        total = physical_memory_bytes()
        if unit == "%" and total is not None and number <= 100:
            size = total * number / 100
        else:
            size = number * _SIZE_UNITS.get(unit, math.nan)
    if not math.isfinite(size) or size <= 0:
        raise ValueError(f"not a size: {value!r}")
    return int(size)


def _format_size(n: float) -> str:
    return f"{n / GiB:.3g}GiB" if n >= GiB else f"{n / MiB:.3g}MiB"


@dataclass(frozen=True)
class MemorySize:
    """A memory size as :func:`parse_size` reads it, at least ``minimum`` bytes and at most this machine's
    physical memory; with ``allow_empty`` the empty string (= "derived", see the field) is allowed too."""

    minimum: int = 128 * MiB
    allow_empty: bool = False

    def admits(self, value: Any) -> bool:
        if self.allow_empty and value == "":
            return True
        try:
            size = parse_size(value)
        except ValueError:
            return False
        total = physical_memory_bytes()
        return size >= self.minimum and (total is None or size <= total)

    def describe(self, kind: str) -> str:
        total = physical_memory_bytes()
        upper = f" to this machine's {_format_size(total)}" if total is not None else ""
        text = (
            f'a size such as "3GiB", "500MB" or "50%" (of physical memory), or a number of GiB, from '
            f"{_format_size(self.minimum)}{upper}"
        )
        return f'"" or {text}' if self.allow_empty else text


@dataclass(frozen=True)
class TimeZone:
    """An IANA time zone name."""

    def admits(self, value: Any) -> bool:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return False
        return True

    def describe(self, kind: str) -> str:
        return 'a known time zone such as "UTC" or "Europe/Berlin"'


@dataclass(frozen=True)
class CronFields:
    """A cron expression of five fields (Dagster checks the fields themselves when it builds the schedule)."""

    def admits(self, value: Any) -> bool:
        return len(value.split()) == 5

    def describe(self, kind: str) -> str:
        return 'a cron expression of 5 fields such as "0 3 * * *"'


@dataclass(frozen=True)
class NonEmpty:
    """A string with something besides white space."""

    def admits(self, value: Any) -> bool:
        return bool(value.strip())

    def describe(self, kind: str) -> str:
        return "a non-empty string"


PositiveInt = Annotated[int, Range(gt=0)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
# Every seed reaches numpy and Annoy; Annoy's set_seed takes a C int.
Seed = Annotated[int, Range(ge=0, le=2**31 - 1)]
CPU_COUNT = os.cpu_count() or 1


class _Section:
    """A settings table: checks every field against its declared type and rule when built, and stores
    ints given for float fields as floats (so equal settings have equal fingerprints)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            checked = _check_field(type(self), f.name, value)
            if checked is not value:
                object.__setattr__(self, f.name, checked)


# ---------------------------------------------------------------------------------------------------
# The sections: one per TOML table.


@dataclass(frozen=True)
class DataSettings(_Section):
    """Where the plays come from."""

    source: Literal["synthetic", "lastfm360k", "hetrec", "triples"] = "synthetic"
    # lastfm360k: the TSV file; hetrec: the folder; triples: a CSV or Parquet file.
    path: str = ""
    # A load fails (keeping the previous tables) when more than this fraction of lines is rejected.
    max_reject_fraction: Fraction = 0.01
    # Column names of a `triples` file.
    user_column: Annotated[str, NonEmpty()] = "user"
    item_column: Annotated[str, NonEmpty()] = "item"
    value_column: Annotated[str, NonEmpty()] = "value"


@dataclass(frozen=True)
class SyntheticSettings(_Section):
    """The built-in Last.fm-shaped generator (the offline default source)."""

    n_users: PositiveInt = 3000
    n_artists: PositiveInt = 4000
    artists_per_user: PositiveFloat = 50.0
    # About 100 artists per genre: planted aliases then sit among an artist's ~120 nearest neighbours.
    n_genres: PositiveInt = 40
    n_alias_pairs: NonNegativeInt = 20
    seed: Seed = 0


@dataclass(frozen=True)
class WeightingSettings(_Section):
    """How play counts become the matrix the models factorise."""

    scheme: Literal["bm25", "tfidf", "confidence", "raw"] = "bm25"
    # artist_user: artists are BM25/TF-IDF "documents" (better on HetRec-2k: p@10 0.165 vs 0.154).
    orientation: Literal["artist_user", "user_artist"] = "artist_user"
    k1: NonNegativeFloat = 100.0
    b: Fraction = 0.8
    tf: Literal["sqrt", "log", "raw"] = "sqrt"
    confidence_alpha: PositiveFloat = 40.0
    confidence_scale: Literal["linear", "log"] = "linear"
    confidence_epsilon: PositiveFloat = 1.0


@dataclass(frozen=True)
class AlsSettings(_Section):
    """Implicit ALS (Hu, Koren & Volinsky 2008) with the conjugate-gradient solver."""

    # Defaults chosen on HetRec-2k (bench/tune_hetrec.py, README "Quality"): 32 factors, lambda 1.0,
    # alpha 0.05 gave p@10 0.199 and MPR 0.060 (mean of 3 random 80/20 splits); implicit's usual
    # 64 / 0.01 / 1.0 gave 0.164 and 0.076 on the same splits.
    factors: PositiveInt = 32
    regularization: NonNegativeFloat = 1.0
    # Confidence of an observed pair = alpha * weighted value (implicit's convention).
    alpha: PositiveFloat = 0.05
    iterations: PositiveInt = 15
    solver: Literal["cg", "cholesky"] = "cg"
    cg_steps: PositiveInt = 3
    seed: Seed = 0


@dataclass(frozen=True)
class LsaSettings(_Section):
    """Truncated SVD of the weighted matrix."""

    # Must also be < min(users, artists) of the data: checked by the LSA assets (check_lsa_factors).
    factors: PositiveInt = 64
    seed: Seed = 0


@dataclass(frozen=True)
class AnnSettings(_Section):
    """Approximate nearest-neighbour index over each factor set."""

    # bench/related.py on the product's own factors (360K x 300K synthetic, default ALS 32 / LSA 64
    # factors), 2 cores, query effort calibrated to recall@10 0.96 (README "Performance"): for ALS, Annoy
    # (20 trees) needed search_k 2828 and took 9 + 4 + 326 s (build, calibration, top-20 for every
    # artist), HNSW (M=32, efC=100) needed ef 21 and took 115 + 4 + 32 s. HNSW is the default.
    backend: Literal["annoy", "hnsw"] = "hnsw"
    # Annoy build and query parameters (search_k: nodes inspected per query, -1 = Annoy's default).
    n_trees: PositiveInt = 20
    search_k: Annotated[int, Range(gt=0, special=(-1,), note="-1 = Annoy's default")] = 1000
    # HNSW (hnswlib) build and query parameters.
    hnsw_m: PositiveInt = 32
    ef_construction: PositiveInt = 100
    ef_search: PositiveInt = 50
    seed: Seed = 0
    # Calibration (when related artists use the index): after building, search_k / ef_search start at
    # the values above and double until recall@10 on `calibration_sample` seeded artists reaches
    # [related] min_recall_at_10 + recall_margin; the index's answers then use that value. When querying
    # every artist at the next doubling would cost more than `query_budget_s` (0 = the estimated time of
    # exact top-k for every artist, measured on the same sample), exact top-k answers instead.
    recall_margin: Annotated[float, Range(ge=0, lt=1)] = 0.01
    calibration_sample: PositiveInt = 1000
    query_budget_s: NonNegativeFloat = 0.0

    def build_params(self) -> dict[str, Any]:
        """The parameters that change the index file (query parameters excluded)."""
        if self.backend == "annoy":
            return {"backend": "annoy", "n_trees": self.n_trees, "seed": self.seed}
        return {
            "backend": "hnsw",
            "M": self.hnsw_m,
            "ef_construction": self.ef_construction,
            "seed": self.seed,
        }

    def query_params(self) -> dict[str, Any]:
        """The parameters that choose the query setting of a built index (the starting search effort and
        the calibration rule)."""
        start = {"search_k": self.search_k} if self.backend == "annoy" else {"ef_search": self.ef_search}
        return start | {
            "recall_margin": self.recall_margin,
            "calibration_sample": self.calibration_sample,
            "query_budget_s": self.query_budget_s,
        }


@dataclass(frozen=True)
class RelatedSettings(_Section):
    """Related artists for every artist."""

    n: PositiveInt = 20
    # exact (blocked GEMM + partial sort), ann (the index), or auto: exact up to exact_max_artists
    # artists. Measured on 2 cores: exact all-artist top-10 took 162 s at 300K artists and grows with the
    # square of the catalogue (~4.5 s at 50K, about what an index build + query-all costs there).
    method: Literal["auto", "exact", "ann"] = "auto"
    exact_max_artists: PositiveInt = 50_000
    # Annoy/HNSW answers are compared with exact top-k on this many sampled artists.
    recall_sample: PositiveInt = 2000
    min_recall_at_10: Fraction = 0.95


@dataclass(frozen=True)
class RecommendSettings(_Section):
    """Per-user recommendations."""

    n: PositiveInt = 20


@dataclass(frozen=True)
class AliasSettings(_Section):
    """Candidate duplicate artists: near-identical factors, few shared listeners."""

    # Measured on the default synthetic data (40 genres): 120 neighbours found 85% of the planted pairs
    # among the top 2 x n_pairs candidates for ALS and LSA alike; 30 neighbours found 20% / 0%.
    neighbours: PositiveInt = 120
    min_factor_similarity: Fraction = 0.3
    max_listener_overlap: Fraction = 0.01
    min_listeners: NonNegativeInt = 10
    # Keep pairs whose shared-listener count is this surprising: score = -log P(Poisson(expected) <= shared);
    # 3.0 means p <= 0.05. Pairs that share no one only because both are small are not aliases.
    min_score: NonNegativeFloat = 3.0


@dataclass(frozen=True)
class EvaluationSettings(_Section):
    """Held-out evaluation of every model against baselines."""

    # per_user: a fraction of each eligible user's items; random: implicit's per-interaction split.
    split: Literal["per_user", "random"] = "per_user"
    test_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    min_items: PositiveInt = 5
    seed: Seed = 0
    # Must also be <= the number of artists: checked by evaluation_report (check_evaluation_k).
    k: PositiveInt = 10


@dataclass(frozen=True)
class RuntimeSettings(_Section):
    """How the work runs (never changes results, so never part of a fingerprint)."""

    # More threads than cores only adds contention.
    threads: Annotated[int, Range(ge=0, le=CPU_COUNT, note=f"0 = all {CPU_COUNT} cores of this machine")] = 0
    # The memory the pipeline plans for: score and factor blocks (evaluation, recommendations, related
    # artists, aliases) are sized from it, and it is DuckDB's memory_limit unless duckdb_memory_limit is
    # set. Python, Dagster and the inputs themselves come on top (issue 10: whole process <= 4 GiB).
    memory_budget: Annotated[str | float, MemorySize()] = "3GiB"
    # "" = the memory budget (DuckDB runs in its own steps, never beside the big numpy blocks).
    duckdb_memory_limit: Annotated[str, MemorySize(allow_empty=True)] = ""

    @property
    def memory_budget_bytes(self) -> int:
        """``memory_budget`` in bytes."""
        return parse_size(self.memory_budget)

    @property
    def duckdb_memory_limit_bytes(self) -> int:
        """DuckDB's ``memory_limit`` in bytes: ``duckdb_memory_limit``, or the memory budget when empty."""
        return parse_size(self.duckdb_memory_limit) if self.duckdb_memory_limit else self.memory_budget_bytes


@dataclass(frozen=True)
class ScheduleSettings(_Section):
    """The refresh schedule."""

    cron: Annotated[str, CronFields()] = "0 3 * * *"
    timezone: Annotated[str, TimeZone()] = "UTC"


@dataclass(frozen=True)
class Settings:
    """Everything a user can set; one attribute per TOML table."""

    data: DataSettings = field(default_factory=DataSettings)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    weighting: WeightingSettings = field(default_factory=WeightingSettings)
    als: AlsSettings = field(default_factory=AlsSettings)
    lsa: LsaSettings = field(default_factory=LsaSettings)
    ann: AnnSettings = field(default_factory=AnnSettings)
    related: RelatedSettings = field(default_factory=RelatedSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    aliases: AliasSettings = field(default_factory=AliasSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    # Where the settings came from (None = built-in defaults); not a setting itself.
    source_file: str | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        # The one rule that spans keys; every single value was checked by its section.
        if self.data.source != "synthetic" and not self.data.path:
            raise SettingsError(
                f"[data] source = {_toml(self.data.source)} needs [data] path (the file or folder to load)"
            )

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections replaced; ``sections`` map a table name to a dict of changes."""
        try:
            changes = {}
            for name, values in sections.items():
                if name not in _section_types():
                    raise SettingsError(f"unknown table {name!r}; known tables: {sorted(_section_types())}")
                if isinstance(values, dict):
                    _reject_unknown_keys(name, values)
                    changes[name] = dataclasses.replace(getattr(self, name), **values)
                else:
                    changes[name] = values
            return dataclasses.replace(self, **changes)
        except SettingsError as exc:
            raise SettingsError(f"replace(): {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Checking values against the declarations above.


@functools.cache
def _section_types() -> dict[str, type]:
    """TOML table name -> its section class, in file order."""
    hints = get_type_hints(Settings)
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name != "source_file"}


@functools.cache
def _field_spec(cls: type, name: str) -> tuple[Any, tuple[Any, ...]]:
    """A field's base type and the rules declared for it in ``Annotated[...]``."""
    hint = get_type_hints(cls, include_extras=True)[name]
    if get_origin(hint) is Annotated:
        base, *rules = get_args(hint)
        return base, tuple(rules)
    return hint, ()


def _table_name(cls: type) -> str:
    return next((name for name, t in _section_types().items() if t is cls), cls.__name__)


def _toml(value: Any) -> str:
    """``value`` as it would be written in TOML (shortened to stay on one line)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        # TOML's own spelling of the special floats; Python's repr of the others reads back in TOML.
        text = {"nan": "nan", "inf": "inf", "-inf": "-inf"}.get(repr(value), repr(value))
    elif isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


_KINDS = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    dict: "a table",
    list: "an array",
}


def _kind(value: Any) -> str:
    return next((text for t, text in _KINDS.items() if isinstance(value, t)), type(value).__name__)


def _coerce(base: Any, value: Any) -> tuple[bool, Any]:
    """Whether ``value`` has type ``base`` (an int is a float; a bool is not an int), and the value
    converted to it."""
    if get_origin(base) is Literal:
        return any(value == choice and type(value) is type(choice) for choice in get_args(base)), value
    allowed = get_args(base) if get_origin(base) is types.UnionType else (base,)
    if isinstance(value, bool):
        return bool in allowed, value
    if isinstance(value, int) and int not in allowed and float in allowed:
        return True, float(value)
    return isinstance(value, allowed), value


def _check_field(cls: type, name: str, value: Any) -> Any:
    """``value`` converted to the field's type; :class:`SettingsError` (one line: table, key, value and what
    is allowed) when it has the wrong type or breaks the field's rule."""
    base, rules = _field_spec(cls, name)
    typed, converted = _coerce(base, value)
    if get_origin(base) is Literal:
        allowed, admitted = "one of " + ", ".join(_toml(choice) for choice in get_args(base)), typed
    else:
        kind = {int: "an integer", float: "a finite number", str: "a string"}.get(base, "a value")
        allowed = " and ".join(rule.describe(kind) for rule in rules) or kind
        finite = not isinstance(converted, float) or math.isfinite(converted)
        admitted = typed and finite and all(rule.admits(converted) for rule in rules)
    if admitted:
        return converted
    got = "" if typed or get_origin(base) is Literal else f" (got {_kind(value)})"
    raise SettingsError(f"[{_table_name(cls)}] {name} = {_toml(value)}: must be {allowed}{got}")


def _reject_unknown_keys(section: str, values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(_section_types()[section])}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown key(s) {unknown} in [{section}]; known keys: {sorted(known)}")


def settings_from_dict(raw: dict[str, Any], where: str = "<settings>") -> Settings:
    """Build validated :class:`Settings` from a parsed TOML document; errors name ``where``."""
    sections = _section_types()
    try:
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise SettingsError(f"unknown table(s) {unknown}; known tables: {sorted(sections)}")
        built = {}
        for name, values in raw.items():
            if not isinstance(values, dict):
                raise SettingsError(f"[{name}] must be a table, got {_toml(values)}")
            _reject_unknown_keys(name, values)
            built[name] = sections[name](**values)
        return Settings(**built, source_file=None if where.startswith("<") else where)
    except SettingsError as exc:
        raise SettingsError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Settings that can only be checked against the data.


def _data_error(settings: Settings, section: str, key: str, allowed: str) -> DataDependentSettingError:
    value = getattr(getattr(settings, section), key)
    where = f"{settings.source_file}: " if settings.source_file else ""
    return DataDependentSettingError(
        f"{where}[{section}] {key} = {_toml(value)} must be {allowed} of this data set"
    )


def check_lsa_factors(settings: Settings, shape: tuple[int, int]) -> None:
    """Raise :class:`DataDependentSettingError` unless ``[lsa] factors`` < min(users, artists) of a
    matrix of ``shape`` (a truncated SVD has fewer components than the smaller side)."""
    limit = min(shape)
    if settings.lsa.factors >= limit:
        raise _data_error(settings, "lsa", "factors", f"< min(users, artists) = {limit}")


def check_evaluation_k(settings: Settings, n_artists: int) -> None:
    """Raise :class:`DataDependentSettingError` unless ``[evaluation] k`` <= ``n_artists`` (the top-k
    metrics rank k artists per user)."""
    if settings.evaluation.k > n_artists:
        raise _data_error(settings, "evaluation", "k", f"<= the number of artists = {n_artists}")


# ---------------------------------------------------------------------------------------------------
# Files, home, fingerprints.


def settings_path() -> Path | None:
    """The settings file in force: ``$RECSYS_CONFIG``, else ``./recsys.toml`` if it exists, else None."""
    env = os.environ.get(SETTINGS_ENV)
    if env:
        path = Path(env)
        if not path.is_file():
            raise SettingsError(f"{SETTINGS_ENV}={env} does not name a file; create it or unset the variable")
        return path
    local = Path(DEFAULT_SETTINGS_FILE)
    return local if local.is_file() else None


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def _read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; :class:`SettingsError` naming the file and the place of any problem."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SettingsError(f"{path}: cannot read the settings file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SettingsError(
            f"{path}: not UTF-8 text: byte {exc.start} (line {line}) is {data[exc.start : exc.start + 1]!r}; "
            "save the file as UTF-8"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        if position is not None:
            message = message[: position.start()]
            raise SettingsError(
                f"{path}, line {position.group(1)}, column {position.group(2)}: not valid TOML: {message}"
            ) from None
        raise SettingsError(f"{path}: not valid TOML: {message}") from None


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the settings file (``path``, or :func:`settings_path`) into :class:`Settings`."""
    path = Path(path) if path is not None else settings_path()
    if path is None:
        return Settings()
    settings = settings_from_dict(_read_toml(path), where=str(path))
    data = settings.data
    if data.path and not Path(data.path).is_absolute():
        # A relative data path is relative to the settings file, not to wherever dagster runs.
        resolved = str((path.parent / data.path).resolve())
        settings = dataclasses.replace(settings, data=dataclasses.replace(data, path=resolved))
    return settings


def recsys_home() -> Path:
    """The folder all data lives under: ``$RECSYS_HOME`` or ``./recsys_home`` (absolute)."""
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).resolve()


def fingerprint(*parts: Any) -> str:
    """A short, stable hash of settings values (dataclasses, dicts, scalars), order-sensitive.

    Used in code versions: equal inputs give equal fingerprints across processes and runs.
    """

    def plain(value: Any) -> Any:
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.compare}
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in sorted(value.items())}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    canonical = json.dumps([plain(p) for p in parts], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]
