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
depends on the data (a model's :attr:`~recsys_assets.core.models.Model.check`, e.g. ``[lsa] factors``
against the matrix shape; ``[evaluation] k`` against the catalogue) is checked by the asset that reads
it (:func:`check_model`, :func:`check_evaluation_k`).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_type_hints

from recsys_assets.artifact_server import UiSettings  # noqa: F401  (re-exported)
from recsys_assets.core.explore import ExploreSettings  # noqa: F401  (re-exported)
from recsys_assets.core.models import Model, get_model, registry
from recsys_assets.core.sections import (  # noqa: F401  (re-exported: the settings API)
    CPU_COUNT,
    CronFields,
    Fraction,
    GiB,
    KiB,
    MemorySize,
    MiB,
    NonEmpty,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Range,
    Section,
    Seed,
    SettingsError,
    TiB,
    TimeZone,
    _toml,
    parse_size,
    physical_memory_bytes,
)
from recsys_assets.core.tuning import TuningSettings
from recsys_assets.engines.settings import EngineSettings  # noqa: F401  (re-exported)

SETTINGS_ENV = "RECSYS_CONFIG"
HOME_ENV = "RECSYS_HOME"
DEFAULT_SETTINGS_FILE = "recsys.toml"
DEFAULT_HOME = "recsys_home"


class DataDependentSettingError(SettingsError):
    """A setting valid in itself is impossible for the data at hand (e.g. more LSA factors than artists).

    Raised at the start of the asset that reads the setting, naming the file, the key, the value and
    what this data set allows.
    """


# ---------------------------------------------------------------------------------------------------
# The sections: one per TOML table.


@dataclass(frozen=True)
class ColumnRef:
    """A column of a `triples` file: its header name or its 1-based position; with ``allow_empty`` also
    "" (= none)."""

    allow_empty: bool = False

    def admits(self, value: Any) -> bool:
        if isinstance(value, int):
            return value >= 1
        return bool(value.strip()) or (self.allow_empty and value == "")

    def describe(self, kind: str) -> str:
        return ('"" or ' if self.allow_empty else "") + "a column name or a 1-based column position"


@dataclass(frozen=True)
class DataSettings(Section):
    """Where the plays (or ratings, or any user-item values) come from."""

    source: Literal["synthetic", "lastfm360k", "hetrec", "triples"] = "synthetic"
    # lastfm360k: the TSV file; hetrec: the folder; triples: a CSV or Parquet file.
    path: str = ""
    # A load fails (keeping the previous tables) when more than this fraction of lines is rejected.
    max_reject_fraction: Fraction = 0.01
    # Rows whose value is below this are not positives (e.g. 3 for 1-5 star ratings): left out of `plays`
    # and counted, not rejected. 0 keeps every row. Any source.
    min_value: NonNegativeFloat = 0.0
    # The columns of a `triples` file: header names, or 1-based positions. In a file of exactly three
    # columns the value column is the remaining one, and without a header the defaults mean 1, 2, 3.
    user_column: Annotated[str | int, ColumnRef()] = "user"
    item_column: Annotated[str | int, ColumnRef()] = "item"
    value_column: Annotated[str | int, ColumnRef()] = "value"
    # Whether line 1 of a `triples` text file names the columns (also read for items_path).
    header: bool = True
    # The delimiter of a `triples` text file; "" = the first of , TAB ; | that fits the file.
    delimiter: Literal["", ",", "\t", ";", "|"] = ""
    # Item names: a column of the `triples` file, or with items_path the name column of that file
    # ("" = the first column after the key). Unnamed items are named by their key.
    item_name_column: Annotated[str | int, ColumnRef(allow_empty=True)] = ""
    # A CSV/TSV of item key and name (e.g. MovieLens' u.item), joined on the item key.
    items_path: str = ""


@dataclass(frozen=True)
class SyntheticSettings(Section):
    """The built-in Last.fm-shaped generator (the offline default source)."""

    n_users: PositiveInt = 3000
    n_artists: PositiveInt = 4000
    artists_per_user: PositiveFloat = 50.0
    # About 100 artists per genre: planted aliases then sit among an artist's ~120 nearest neighbours.
    n_genres: PositiveInt = 40
    n_alias_pairs: NonNegativeInt = 20
    seed: Seed = 0


@dataclass(frozen=True)
class WeightingSettings(Section):
    """How play counts become the matrix the models factorise."""

    scheme: Literal["bm25", "tfidf", "confidence", "log", "raw"] = "bm25"
    # artist_user: artists are BM25/TF-IDF "documents" (the better one on HetRec-2k: README "Quality").
    orientation: Literal["artist_user", "user_artist"] = "artist_user"
    k1: NonNegativeFloat = 100.0
    b: Fraction = 0.8
    tf: Literal["sqrt", "log", "raw"] = "sqrt"
    # The confidence scheme: 1 + alpha * f(plays).
    alpha: PositiveFloat = 40.0
    confidence_scale: Literal["linear", "log"] = "linear"
    confidence_epsilon: PositiveFloat = 1.0
    # The log scheme: log(1 + plays / epsilon).
    epsilon: PositiveFloat = 1.0


@dataclass(frozen=True)
class AnnSettings(Section):
    """Approximate nearest-neighbour index over each factor set."""

    # HNSW is the default: faster than Annoy at equal recall on the product's factors (README
    # "Performance", bench/related.py).
    backend: Literal["annoy", "hnsw"] = "hnsw"
    # Annoy build and query parameters (search_k: nodes inspected per query, -1 = Annoy's default).
    n_trees: PositiveInt = 20
    search_k: Annotated[int, Range(gt=0, special=(-1,), note="-1 = Annoy's default")] = 1000
    # HNSW (hnswlib) build and query parameters (core.ann.build_index's own M default is 16; the
    # product's is this one).
    M: PositiveInt = 32
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

    def in_use(self) -> AnnSettings:
        """These settings with the other backend's keys at their defaults: what an index actually reads
        (so a setting of the backend not in use never makes an index stale)."""
        other = ("M", "ef_construction", "ef_search") if self.backend == "annoy" else ("n_trees", "search_k")
        defaults = {f.name: f.default for f in dataclasses.fields(self) if f.name in other}
        return dataclasses.replace(self, **defaults)

    def build_params(self) -> dict[str, Any]:
        """The parameters that change the index file (query parameters excluded)."""
        if self.backend == "annoy":
            return {"backend": "annoy", "n_trees": self.n_trees, "seed": self.seed}
        return {
            "backend": "hnsw",
            "M": self.M,
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
class RelatedSettings(Section):
    """Related artists for every artist."""

    n: PositiveInt = 20
    # exact (blocked GEMM + partial sort), ann (the index), or auto: exact up to exact_max_artists
    # artists (where exact costs about what an index build + query-all does: README "Figures behind
    # the defaults").
    method: Literal["auto", "exact", "ann"] = "auto"
    exact_max_artists: PositiveInt = 50_000
    # Annoy/HNSW answers are compared with exact top-k on this many sampled artists.
    recall_sample: PositiveInt = 2000
    min_recall_at_10: Fraction = 0.95


@dataclass(frozen=True)
class RecommendSettings(Section):
    """Per-user recommendations."""

    n: PositiveInt = 20


@dataclass(frozen=True)
class AliasSettings(Section):
    """Candidate duplicate artists: near-identical factors, few shared listeners."""

    # Nearest neighbours per artist: about the size of a genre (README "Figures behind the defaults").
    k: PositiveInt = 120
    min_factor_similarity: Fraction = 0.3
    max_listener_overlap: Fraction = 0.01
    min_listeners: NonNegativeInt = 10
    # Keep pairs whose shared-listener count is this surprising: score = -log P(Poisson(expected) <= shared);
    # 3.0 means p <= 0.05. Pairs that share no one only because both are small are not aliases.
    min_score: NonNegativeFloat = 3.0


@dataclass(frozen=True)
class EvaluationSettings(Section):
    """Held-out evaluation of every model against baselines."""

    # per_user: a fraction of each eligible user's items; random: implicit's per-interaction split.
    split: Literal["per_user", "random"] = "per_user"
    test_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.2
    min_items: PositiveInt = 5
    seed: Seed = 0
    # Must also be <= the number of artists: checked by evaluation_report (check_evaluation_k).
    k: PositiveInt = 10

    def split_params(self) -> dict[str, Any]:
        """The keys that choose the train/test split (``k`` only shapes the metrics)."""
        return {
            "split": self.split,
            "test_fraction": self.test_fraction,
            "min_items": self.min_items,
            "seed": self.seed,
        }


@dataclass(frozen=True)
class RuntimeSettings(Section):
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
class ScheduleSettings(Section):
    """The refresh schedule."""

    cron: Annotated[str, CronFields()] = "0 3 * * *"
    timezone: Annotated[str, TimeZone()] = "UTC"


class RegisteredModels:
    """Rule of ``[models] enabled``: distinct names of registered models (at least one)."""

    def admits(self, value: Any) -> bool:
        names = registry()
        return bool(value) and len(set(value)) == len(value) and all(v in names for v in value)

    def describe(self, kind: str) -> str:
        return "a non-empty array of distinct model names out of " + ", ".join(_toml(n) for n in registry())


@dataclass(frozen=True)
class ModelsSettings(Section):
    """Which registered models the graph fits, evaluates, indexes and publishes (in this order)."""

    enabled: Annotated[tuple, RegisteredModels()] = ("als", "lsa")

    def __post_init__(self) -> None:
        if isinstance(self.enabled, list):  # TOML arrays arrive as lists
            object.__setattr__(self, "enabled", tuple(self.enabled))
        super().__post_init__()


def _default_model_sections() -> dict[str, Section]:
    return {name: model.settings() for name, model in registry().items()}


@dataclass(frozen=True)
class Settings:
    """Everything a user can set; one attribute per TOML table.

    Every registered model has its own table ``[name]`` (its :attr:`Model.settings` section), read
    with :meth:`model_settings` or as an attribute (``settings.als``); ``[models] enabled`` picks the
    models the graph runs.
    """

    data: DataSettings = field(default_factory=DataSettings)
    synthetic: SyntheticSettings = field(default_factory=SyntheticSettings)
    weighting: WeightingSettings = field(default_factory=WeightingSettings)
    models: ModelsSettings = field(default_factory=ModelsSettings)
    ann: AnnSettings = field(default_factory=AnnSettings)
    related: RelatedSettings = field(default_factory=RelatedSettings)
    recommend: RecommendSettings = field(default_factory=RecommendSettings)
    aliases: AliasSettings = field(default_factory=AliasSettings)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    schedule: ScheduleSettings = field(default_factory=ScheduleSettings)
    ui: UiSettings = field(default_factory=UiSettings)
    tuning: TuningSettings = field(default_factory=TuningSettings)
    explore: ExploreSettings = field(default_factory=ExploreSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    # Model name -> its settings section, for every registered model (enabled or not).
    model_sections: dict[str, Section] = field(default_factory=_default_model_sections)
    # Where the settings came from (None = built-in defaults); not a setting itself.
    source_file: str | None = field(default=None, compare=False)
    # Table name -> the keys the settings file wrote explicitly (tuning never overrides them); not a
    # setting itself.
    explicit: dict[str, frozenset[str]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        # The one rule that spans keys; every single value was checked by its section.
        if self.data.source != "synthetic" and not self.data.path:
            raise SettingsError(
                f"[data] source = {_toml(self.data.source)} needs [data] path (the file or folder to load)"
            )
        # A model registered after these sections were built gets its defaults.
        missing = {n: m.settings() for n, m in registry().items() if n not in self.model_sections}
        if missing:
            object.__setattr__(self, "model_sections", {**self.model_sections, **missing})

    def model_settings(self, name: str) -> Any:
        """The ``[name]`` section of a registered model."""
        if name not in self.model_sections:
            raise SettingsError(f"unknown model {name!r}; known models: {', '.join(registry())}")
        return self.model_sections[name]

    def fixed_for(self, name: str) -> frozenset[str]:
        """What tuning model ``name`` must leave as written: the keys of ``[name]`` the settings file
        sets, and ``weighting.<key>`` for each key of ``[weighting]`` it sets that a tuned weighting has
        (scheme, orientation, k1, b, epsilon)."""
        tunable = {"scheme", "orientation", "k1", "b", "epsilon"}
        weighting = self.explicit.get("weighting", frozenset()) & tunable
        return frozenset(self.explicit.get(name, frozenset())) | {f"weighting.{k}" for k in weighting}

    def enabled_models(self) -> tuple[Model, ...]:
        """The registered models of ``[models] enabled``, in that order."""
        return tuple(get_model(name) for name in self.models.enabled)

    def __getattr__(self, name: str) -> Any:
        # Only reached when normal lookup fails: a model's table read as an attribute (``settings.als``).
        sections = self.__dict__.get("model_sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections replaced; ``sections`` map a table name to a dict of changes (or to
        a whole section)."""
        try:
            changes: dict[str, Any] = {}
            models = dict(self.model_sections)
            types = _section_types()
            for name, values in sections.items():
                if name not in types:
                    raise SettingsError(f"unknown table {name!r}; known tables: {sorted(types)}")
                current = models[name] if name in models else getattr(self, name)
                if isinstance(values, dict):
                    _reject_unknown_keys(name, values)
                    values = dataclasses.replace(current, **values)
                if name in models:
                    models[name] = values
                else:
                    changes[name] = values
            return dataclasses.replace(self, **changes, model_sections=models)
        except SettingsError as exc:
            raise SettingsError(f"replace(): {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Checking values against the declarations above.


@functools.cache
def _fixed_section_types() -> dict[str, type]:
    """The product's own tables: TOML table name -> section class, in file order."""
    hints = get_type_hints(Settings)
    skip = {"source_file", "model_sections", "explicit"}
    return {f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.name not in skip}


for _name, _cls in _fixed_section_types().items():
    _cls.TABLE = _name


def _section_types() -> dict[str, type]:
    """Every TOML table: the product's own, then one per registered model."""
    fixed = _fixed_section_types()
    models = {name: model.settings for name, model in registry().items()}
    clash = sorted(set(fixed) & set(models))
    if clash:
        raise TypeError(f"model name(s) {clash} clash with settings tables of the same name")
    return fixed | models


def _reject_unknown_keys(section: str, values: dict[str, Any]) -> None:
    known = {f.name for f in dataclasses.fields(_section_types()[section])}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"unknown key(s) {unknown} in [{section}]; known keys: {sorted(known)}")


def settings_from_dict(raw: dict[str, Any], where: str = "<settings>") -> Settings:
    """Build validated :class:`Settings` from a parsed TOML document; errors name ``where``."""
    sections, fixed = _section_types(), _fixed_section_types()
    try:
        unknown = sorted(set(raw) - set(sections))
        if unknown:
            raise SettingsError(f"unknown table(s) {unknown}; known tables: {sorted(sections)}")
        built: dict[str, Any] = {}
        models = _default_model_sections()
        for name, values in raw.items():
            if not isinstance(values, dict):
                raise SettingsError(f"[{name}] must be a table, got {_toml(values)}")
            _reject_unknown_keys(name, values)
            (built if name in fixed else models)[name] = sections[name](**values)
        explicit = {name: frozenset(values) for name, values in raw.items()}
        return Settings(
            **built,
            model_sections=models,
            source_file=None if where.startswith("<") else where,
            explicit=explicit,
        )
    except SettingsError as exc:
        raise SettingsError(f"{where}: {exc}") from None


# ---------------------------------------------------------------------------------------------------
# Settings that can only be checked against the data.


def data_error(
    where: str | None, table: str, key: str, value: Any, allowed: str
) -> DataDependentSettingError:
    """The error of ``[table] key = value`` (read from the settings file ``where``, None = defaults)
    that this data set does not allow; ``allowed`` says what it allows."""
    prefix = f"{where}: " if where else ""
    return DataDependentSettingError(
        f"{prefix}[{table}] {key} = {_toml(value)} must be {allowed} of this data set"
    )


def check_model(model: Model, section: Any, shape: tuple[int, int], where: str | None = None) -> None:
    """Raise :class:`DataDependentSettingError` when ``model``'s settings ``section`` are impossible
    for a users x artists matrix of ``shape`` (its :attr:`Model.check` hook; e.g. LSA factors >=
    min(users, artists)); ``where``: the settings file, named in the message."""
    problem = model.check(section, shape) if model.check is not None else None
    if problem is not None:
        key, allowed = problem
        raise data_error(where, model.name, key, getattr(section, key), allowed)


def check_evaluation_k(k: int, n_artists: int, where: str | None = None) -> None:
    """Raise :class:`DataDependentSettingError` unless ``[evaluation] k`` <= ``n_artists`` (the top-k
    metrics rank k artists per user)."""
    if k > n_artists:
        raise data_error(where, "evaluation", "k", k, f"<= the number of artists = {n_artists}")


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
    # A relative data path is relative to the settings file, not to wherever dagster runs.
    resolved = {
        key: str((path.parent / value).resolve())
        for key, value in (("path", data.path), ("items_path", data.items_path))
        if value and not Path(value).is_absolute()
    }
    if resolved:
        settings = dataclasses.replace(settings, data=dataclasses.replace(data, **resolved))
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
