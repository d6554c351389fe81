"""Settings: one TOML file users edit, read into typed, validated dataclasses.

The file is ``$RECSYS_CONFIG`` if set, else ``./recsys.toml`` if present, else built-in defaults.
All data lives under ``$RECSYS_HOME`` (default ``./recsys_home``). ``recsys.example.toml``
documents every setting.

Why settings live in a file and not in Dagster run config: run config never marks an asset stale,
and a later refresh would silently fall back to the defaults. Each asset instead carries a
fingerprint of exactly the settings it reads in its ``code_version`` (:func:`fingerprint`), so
editing one value marks exactly that asset and its descendants unsynced.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tomllib
import zoneinfo
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints

SETTINGS_ENV = "RECSYS_CONFIG"
HOME_ENV = "RECSYS_HOME"
DEFAULT_SETTINGS_FILE = "recsys.toml"
DEFAULT_HOME = "recsys_home"


class SettingsError(ValueError):
    """The settings file has an unknown key, a value of the wrong type, or an invalid value."""


@dataclass(frozen=True)
class DataSettings:
    """Where the plays come from."""

    source: Literal["synthetic", "lastfm360k", "hetrec", "triples"] = "synthetic"
    # lastfm360k: the TSV file; hetrec: the folder; triples: a CSV or Parquet file.
    path: str = ""
    # A load fails (keeping the previous tables) when more than this fraction of lines is rejected.
    max_reject_fraction: float = 0.01
    # Column names of a `triples` file.
    user_column: str = "user"
    item_column: str = "item"
    value_column: str = "value"


@dataclass(frozen=True)
class SyntheticSettings:
    """The built-in Last.fm-shaped generator (the offline default source)."""

    n_users: int = 3000
    n_artists: int = 4000
    artists_per_user: float = 50.0
    # About 100 artists per genre: planted aliases then sit among an artist's ~120 nearest neighbours.
    n_genres: int = 40
    n_alias_pairs: int = 20
    seed: int = 0


@dataclass(frozen=True)
class WeightingSettings:
    """How play counts become the matrix the models factorise."""

    scheme: Literal["bm25", "tfidf", "confidence", "raw"] = "bm25"
    # artist_user: artists are BM25/TF-IDF "documents" (better on HetRec-2k: p@10 0.165 vs 0.154).
    orientation: Literal["artist_user", "user_artist"] = "artist_user"
    k1: float = 100.0
    b: float = 0.8
    tf: Literal["sqrt", "log", "raw"] = "sqrt"
    confidence_alpha: float = 40.0
    confidence_scale: Literal["linear", "log"] = "linear"
    confidence_epsilon: float = 1.0


@dataclass(frozen=True)
class AlsSettings:
    """Implicit ALS (Hu, Koren & Volinsky 2008) with the conjugate-gradient solver."""

    # Defaults chosen on HetRec-2k (bench/tune_hetrec.py, README "Quality"): 32 factors, lambda 1.0,
    # alpha 0.05 gave p@10 0.199 and MPR 0.060 (mean of 3 random 80/20 splits); implicit's usual
    # 64 / 0.01 / 1.0 gave 0.164 and 0.076 on the same splits.
    factors: int = 32
    regularization: float = 1.0
    # Confidence of an observed pair = alpha * weighted value (implicit's convention).
    alpha: float = 0.05
    iterations: int = 15
    solver: Literal["cg", "cholesky"] = "cg"
    cg_steps: int = 3
    seed: int = 0


@dataclass(frozen=True)
class LsaSettings:
    """Truncated SVD of the weighted matrix."""

    factors: int = 64
    seed: int = 0


@dataclass(frozen=True)
class AnnSettings:
    """Approximate nearest-neighbour index over each factor set."""

    # bench/related.py, 300K artists x 64 ALS factors, 2 cores (README "Performance"): Annoy with 20
    # trees and search_k=1000 built in 4.6 s and answered every artist in 20.6 s at recall@10 0.98; HNSW
    # (M=32, efC=100, ef=50) took 13.5 + 8.5 s at 0.99. Both meet the 60 s / 0.95 target; Annoy is the
    # default because the design names it and its index is memory-mapped by readers.
    backend: Literal["annoy", "hnsw"] = "annoy"
    # Annoy build and query parameters (search_k: nodes inspected per query, -1 = Annoy's default).
    n_trees: int = 20
    search_k: int = 1000
    # HNSW (hnswlib) build and query parameters.
    hnsw_m: int = 32
    ef_construction: int = 100
    ef_search: int = 50
    seed: int = 0

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
        """The parameters that change answers of a built index."""
        if self.backend == "annoy":
            return {"search_k": self.search_k}
        return {"ef_search": self.ef_search}


@dataclass(frozen=True)
class RelatedSettings:
    """Related artists for every artist."""

    n: int = 20
    # exact (blocked GEMM + partial sort), ann (the index), or auto: exact up to exact_max_artists
    # artists. Measured on 2 cores: exact all-artist top-10 took 162 s at 300K artists and grows with the
    # square of the catalogue (~4.5 s at 50K, about what an index build + query-all costs there).
    method: Literal["auto", "exact", "ann"] = "auto"
    exact_max_artists: int = 50_000
    # Annoy/HNSW answers are compared with exact top-k on this many sampled artists.
    recall_sample: int = 2000
    min_recall_at_10: float = 0.95


@dataclass(frozen=True)
class RecommendSettings:
    """Per-user recommendations."""

    n: int = 20


@dataclass(frozen=True)
class AliasSettings:
    """Candidate duplicate artists: near-identical factors, few shared listeners."""

    # Measured on the default synthetic data (40 genres): 120 neighbours found 85% of the planted pairs
    # among the top 2 x n_pairs candidates for ALS and LSA alike; 30 neighbours found 20% / 0%.
    neighbours: int = 120
    min_factor_similarity: float = 0.3
    max_listener_overlap: float = 0.01
    min_listeners: int = 10
    # Keep pairs whose shared-listener count is this surprising: score = -log P(Poisson(expected) <= shared);
    # 3.0 means p <= 0.05. Pairs that share no one only because both are small are not aliases.
    min_score: float = 3.0


@dataclass(frozen=True)
class EvaluationSettings:
    """Held-out evaluation of every model against baselines."""

    # per_user: a fraction of each eligible user's items; random: implicit's per-interaction split.
    split: Literal["per_user", "random"] = "per_user"
    test_fraction: float = 0.2
    min_items: int = 5
    seed: int = 0
    k: int = 10


@dataclass(frozen=True)
class RuntimeSettings:
    """How the work runs (never changes results, so never part of a fingerprint)."""

    # 0 = all cores numba may use.
    threads: int = 0
    duckdb_memory_limit: str = "4GB"
    # Bytes the score tiles of evaluation and recommendations may use (their block sizes follow from it).
    memory_budget_bytes: int = 3 * 1024**3


@dataclass(frozen=True)
class ScheduleSettings:
    """The refresh schedule."""

    cron: str = "0 3 * * *"
    timezone: str = "UTC"


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

    def replace(self, **sections: Any) -> Settings:
        """A copy with some sections replaced; ``sections`` map a table name to a dict of changes."""
        changes = {}
        for name, values in sections.items():
            current = getattr(self, name)
            changes[name] = dataclasses.replace(current, **values) if isinstance(values, dict) else values
        new = dataclasses.replace(self, **changes)
        _validate(new, where="replace()")
        return new


def _check_value(section: str, key: str, value: Any, annotation: Any, where: str) -> Any:
    origin = get_origin(annotation)
    if origin is Literal:
        allowed = get_args(annotation)
        if value not in allowed:
            raise SettingsError(f"{where}: [{section}] {key} = {value!r} is not one of {list(allowed)}")
        return value
    expected = annotation
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected in (int, float, str, bool) and (
        not isinstance(value, expected) or (expected is int and isinstance(value, bool))
    ):
        raise SettingsError(
            f"{where}: [{section}] {key} = {value!r} should be {expected.__name__}, got {type(value).__name__}"
        )
    return value


def _section_from_dict(cls: type, section: str, values: dict[str, Any], where: str) -> Any:
    if not isinstance(values, dict):
        raise SettingsError(f"{where}: [{section}] must be a table")
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise SettingsError(f"{where}: unknown key(s) {unknown} in [{section}]; known keys: {sorted(known)}")
    checked = {key: _check_value(section, key, value, hints[key], where) for key, value in values.items()}
    return cls(**checked)


def _validate(settings: Settings, where: str) -> None:
    positive = {
        ("synthetic", "n_users"),
        ("synthetic", "n_artists"),
        ("synthetic", "artists_per_user"),
        ("synthetic", "n_genres"),
        ("als", "factors"),
        ("als", "iterations"),
        ("als", "cg_steps"),
        ("als", "alpha"),
        ("lsa", "factors"),
        ("ann", "n_trees"),
        ("ann", "hnsw_m"),
        ("ann", "ef_construction"),
        ("ann", "ef_search"),
        ("related", "n"),
        ("related", "recall_sample"),
        ("related", "exact_max_artists"),
        ("recommend", "n"),
        ("aliases", "neighbours"),
        ("evaluation", "k"),
        ("evaluation", "min_items"),
        ("runtime", "memory_budget_bytes"),
    }
    for section, key in sorted(positive):
        value = getattr(getattr(settings, section), key)
        if value <= 0:
            raise SettingsError(f"{where}: [{section}] {key} must be > 0, got {value}")
    fractions = {
        ("data", "max_reject_fraction"),
        ("related", "min_recall_at_10"),
        ("aliases", "min_factor_similarity"),
        ("aliases", "max_listener_overlap"),
    }
    for section, key in sorted(fractions):
        value = getattr(getattr(settings, section), key)
        if not 0.0 <= value <= 1.0:
            raise SettingsError(f"{where}: [{section}] {key} must be in [0, 1], got {value}")
    if not 0.0 < settings.evaluation.test_fraction < 1.0:
        raise SettingsError(f"{where}: [evaluation] test_fraction must be in (0, 1)")
    if settings.data.source != "synthetic" and not settings.data.path:
        raise SettingsError(
            f"{where}: [data] source = {settings.data.source!r} needs [data] path (the file or folder to load)"
        )
    if settings.weighting.k1 < 0 or not 0.0 <= settings.weighting.b <= 1.0:
        raise SettingsError(f"{where}: [weighting] needs k1 >= 0 and 0 <= b <= 1")
    try:
        zoneinfo.ZoneInfo(settings.schedule.timezone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise SettingsError(
            f"{where}: [schedule] timezone = {settings.schedule.timezone!r} is not a known time zone"
        ) from exc
    if len(settings.schedule.cron.split()) != 5:
        raise SettingsError(
            f"{where}: [schedule] cron = {settings.schedule.cron!r} needs 5 fields, e.g. '0 3 * * *'"
        )
    if settings.ann.search_k == 0 or settings.ann.search_k < -1:
        raise SettingsError(f"{where}: [ann] search_k must be -1 (Annoy's default) or > 0")
    if settings.weighting.confidence_alpha <= 0 or settings.weighting.confidence_epsilon <= 0:
        raise SettingsError(f"{where}: [weighting] confidence_alpha and confidence_epsilon must be > 0")
    if settings.synthetic.n_alias_pairs < 0:
        raise SettingsError(f"{where}: [synthetic] n_alias_pairs must be >= 0")
    if settings.aliases.min_score < 0:
        raise SettingsError(f"{where}: [aliases] min_score must be >= 0")
    if settings.als.regularization < 0:
        raise SettingsError(f"{where}: [als] regularization must be >= 0")


def settings_from_dict(raw: dict[str, Any], where: str = "<settings>") -> Settings:
    """Build validated :class:`Settings` from a parsed TOML document."""
    sections = {f.name: f for f in dataclasses.fields(Settings) if f.name != "source_file"}
    unknown = sorted(set(raw) - set(sections))
    if unknown:
        raise SettingsError(f"{where}: unknown table(s) {unknown}; known tables: {sorted(sections)}")
    hints = get_type_hints(Settings)
    built = {name: _section_from_dict(hints[name], name, raw[name], where) for name in raw}
    settings = Settings(**built, source_file=None if where.startswith("<") else where)
    _validate(settings, where)
    return settings


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


def load_settings(path: str | Path | None = None) -> Settings:
    """Read the settings file (``path``, or :func:`settings_path`) into :class:`Settings`."""
    path = Path(path) if path is not None else settings_path()
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as handle:
            raw = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    settings = settings_from_dict(raw, where=str(path))
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
