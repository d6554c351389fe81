import dataclasses
import math
import re
import tomllib
import types
from pathlib import Path
from typing import Annotated, Literal, get_args, get_origin, get_type_hints

import duckdb
import numpy as np
import pytest

from recsys_assets.core.models import registry
from recsys_assets.settings import (
    CPU_COUNT,
    ColumnRef,
    GiB,
    MemorySize,
    MiB,
    Range,
    Settings,
    SettingsError,
    _section_types,
    fingerprint,
    load_settings,
    parse_size,
    physical_memory_bytes,
    settings_from_dict,
)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "recsys.example.toml"


def section_names() -> list[str]:
    """Every TOML table: the product's own and one per registered model."""
    return list(_section_types())


def test_example_file_documents_every_setting_with_its_default():
    raw = tomllib.loads(EXAMPLE.read_text())
    defaults = Settings()
    for name in section_names():
        table = getattr(defaults, name)
        documented = raw[name]
        assert set(documented) == {f.name for f in dataclasses.fields(table)}, name
        for f in dataclasses.fields(table):
            value = getattr(table, f.name)
            value = list(value) if isinstance(value, tuple) else value  # TOML arrays read as lists
            assert documented[f.name] == value, f"[{name}] {f.name}"
    assert load_settings(EXAMPLE) == defaults


def readme_settings_examples() -> list[str]:
    """Every settings file the README shows: heredocs into recsys.toml and ```toml blocks."""
    text = (ROOT / "README.md").read_text()
    heredocs = re.findall(r"cat > recsys\.toml <<'EOF'\n(.*?)\nEOF", text, flags=re.S)
    fenced = re.findall(r"```toml\n(.*?)```", text, flags=re.S)
    return heredocs + fenced


def test_readme_settings_examples_load(tmp_path):
    examples = readme_settings_examples()
    assert examples, "the README shows at least the Last.fm 360K settings"
    for i, example in enumerate(examples):
        cfg = tmp_path / f"readme{i}.toml"
        cfg.write_text(example)
        load_settings(cfg)


def test_file_values_are_typed_and_relative_paths_resolved(tmp_path):
    (tmp_path / "plays.tsv").write_text("")
    cfg = tmp_path / "recsys.toml"
    cfg.write_text('[data]\nsource = "lastfm360k"\npath = "plays.tsv"\n[als]\nfactors = 32\nalpha = 2\n')
    settings = load_settings(cfg)
    assert settings.als.factors == 32 and settings.als.alpha == 2.0 and isinstance(settings.als.alpha, float)
    assert settings.data.path == str(tmp_path / "plays.tsv")
    assert settings.source_file == str(cfg)


# (TOML text, the message after "<file>: "). Each names the section, the key, the value as written and
# what is allowed.
BAD_SETTINGS = [
    ("[aliases]\nmin_score = nan", r"[aliases] min_score = nan: must be a finite number >= 0"),
    ("[als]\nregularization = nan", r"[als] regularization = nan: must be a finite number >= 0"),
    ("[als]\nalpha = inf", r"[als] alpha = inf: must be a finite number > 0"),
    ("[weighting]\nk1 = nan", r"[weighting] k1 = nan: must be a finite number >= 0"),
    ("[weighting]\nb = -inf", r"[weighting] b = -inf: must be a finite number in [0, 1]"),
    ("[als]\nseed = -1", r"[als] seed = -1: must be an integer in [0, 2147483647]"),
    ("[ann]\nseed = 4294967296", r"[ann] seed = 4294967296: must be an integer in [0, 2147483647]"),
    ("[runtime]\nthreads = -1", f"[runtime] threads = -1: must be an integer in [0, {CPU_COUNT}] (0 = all"),
    ("[runtime]\nthreads = 1000", f"[runtime] threads = 1000: must be an integer in [0, {CPU_COUNT}]"),
    (
        '[runtime]\nduckdb_memory_limit = "lots"',
        '[runtime] duckdb_memory_limit = "lots": must be "" or a size',
    ),
    ('[runtime]\nduckdb_memory_limit = "4"', '[runtime] duckdb_memory_limit = "4": must be "" or a size'),
    (
        '[runtime]\nmemory_budget = "3 parsecs"',
        '[runtime] memory_budget = "3 parsecs": must be a size such as',
    ),
    ('[runtime]\nmemory_budget = "1MB"', '[runtime] memory_budget = "1MB": must be a size such as'),
    ('[runtime]\nmemory_budget = "1000TiB"', '[runtime] memory_budget = "1000TiB": must be a size'),
    ("[runtime]\nmemory_budget = 0", "[runtime] memory_budget = 0: must be a size"),
    ("[runtime]\nmemory_budget = nan", "[runtime] memory_budget = nan: must be a size"),
    ('[runtime]\nmemory_budget = "0%"', '[runtime] memory_budget = "0%": must be a size'),
    ('[als]\nfactors = "64"', '[als] factors = "64": must be an integer > 0 (got a string)'),
    ("[als]\nfactors = 0", "[als] factors = 0: must be an integer > 0"),
    ("[als]\nfactors = 3.0", "[als] factors = 3.0: must be an integer > 0 (got a number)"),
    ("[als]\nfactors = true", "[als] factors = true: must be an integer > 0 (got a boolean)"),
    ("[als]\ncg_steps = [1]", "[als] cg_steps = [1]: must be an integer > 0 (got an array)"),
    ("[lsa]\nfactors = -5", "[lsa] factors = -5: must be an integer > 0"),
    ("[evaluation]\nk = 0", "[evaluation] k = 0: must be an integer > 0"),
    ('[ann]\nbackend = "faiss"', '[ann] backend = "faiss": must be one of "annoy", "hnsw"'),
    ("[ann]\nsearch_k = 0", "[ann] search_k = 0: must be -1 or an integer > 0 (-1 = Annoy's default)"),
    (
        "[evaluation]\ntest_fraction = 1.0",
        "[evaluation] test_fraction = 1.0: must be a finite number in (0, 1)",
    ),
    (
        "[related]\nmin_recall_at_10 = 1.5",
        "[related] min_recall_at_10 = 1.5: must be a finite number in [0, 1]",
    ),
    (
        "[weighting]\nconfidence_epsilon = 0.0",
        "[weighting] confidence_epsilon = 0.0: must be a finite number > 0",
    ),
    ("[synthetic]\nn_alias_pairs = -1", "[synthetic] n_alias_pairs = -1: must be an integer >= 0"),
    (
        "[synthetic]\nartists_per_user = 1e400",
        "[synthetic] artists_per_user = inf: must be a finite number > 0",
    ),
    ("[aliases]\nmin_listeners = -3", "[aliases] min_listeners = -3: must be an integer >= 0"),
    (
        '[data]\nuser_column = ""',
        '[data] user_column = "": must be a column name or a 1-based column position',
    ),
    (
        "[data]\nvalue_column = 0",
        "[data] value_column = 0: must be a column name or a 1-based column position",
    ),
    (
        "[data]\nitem_name_column = 1.5",
        '[data] item_name_column = 1.5: must be "" or a column name or a 1-based',
    ),
    ('[data]\ndelimiter = ":"', '[data] delimiter = ":": must be one of "", ",", "\\t", ";", "|"'),
    ("[data]\nmin_value = -1", "[data] min_value = -1: must be a finite number >= 0"),
    ('[data]\nheader = "no"', '[data] header = "no": must be true or false (got a string)'),
    ("[data]\nheader = 0", "[data] header = 0: must be true or false (got an integer)"),
    ("[ui]\nport = 70000", "[ui] port = 70000: must be an integer in [1, 65535]"),
    (
        '[ui]\nartifacts_port = "3001"',
        '[ui] artifacts_port = "3001": must be an integer in [1, 65535] (got a',
    ),
    ("[ui]\nartifacts_port = 3000", "[ui] artifacts_port = 3000: must differ from [ui] port = 3000"),
    (
        '[schedule]\ntimezone = "Mars/Olympus"',
        '[schedule] timezone = "Mars/Olympus": must be a known time zone',
    ),
    ('[schedule]\ncron = "daily"', '[schedule] cron = "daily": must be a cron expression of 5 fields'),
    ('[data]\nsource = "hetrec"', '[data] source = "hetrec" needs [data] path'),
    ("[als]\nfactor = 3", "unknown key(s) ['factor'] in [als]; known keys: ['alpha', "),
    ("[alss]", "unknown table(s) ['alss']; known tables: ['aliases', "),
    ("als = 3", "[als] must be a table, got 3"),
]


@pytest.mark.parametrize(
    ("toml", "message"), BAD_SETTINGS, ids=[t.replace("\n", " ") for t, _ in BAD_SETTINGS]
)
def test_bad_settings_are_rejected_at_load_with_file_key_value_and_range(tmp_path, toml, message):
    cfg = tmp_path / "my.toml"
    cfg.write_text(toml + "\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(cfg)
    text = str(caught.value)
    assert text.startswith(f"{cfg}: {message}"), text
    assert "\n" not in text


# Edges of every kind of rule: nothing valid is rejected.
VALID_EDGES = [
    {
        "aliases": {
            "min_score": 0.0,
            "min_listeners": 0,
            "min_factor_similarity": 1,
            "max_listener_overlap": 0,
        }
    },
    {"weighting": {"k1": 0, "b": 1}},
    {"als": {"regularization": 0, "seed": 2**31 - 1, "factors": 1}},
    {"ann": {"search_k": -1}},
    {"evaluation": {"test_fraction": 0.999}},
    {"runtime": {"threads": 0}},
    {"runtime": {"threads": CPU_COUNT}},
    {"runtime": {"memory_budget": "128MiB", "duckdb_memory_limit": "4GB"}},
    {"runtime": {"memory_budget": 2.5, "duckdb_memory_limit": "500 mb"}},
    {"runtime": {"memory_budget": 1, "duckdb_memory_limit": "50%"}},
    {"schedule": {"timezone": "Europe/Berlin", "cron": "*/15 6-22 * * 1-5"}},
    {"synthetic": {"n_alias_pairs": 0}},
    {"data": {"header": False}},
    {"ui": {"port": 1, "artifacts_port": 65535}},
]


@pytest.mark.parametrize("raw", VALID_EDGES)
def test_valid_edge_values_are_accepted(raw):
    settings = settings_from_dict(raw, where="edge.toml")
    for section, values in raw.items():
        for key, value in values.items():
            assert getattr(getattr(settings, section), key) == value


def test_every_numeric_setting_declares_its_range():
    """A numeric field without a declared range would accept any value (a new field must say its range)."""
    for name, cls in _section_types().items():
        for key, hint in get_type_hints(cls, include_extras=True).items():
            base = get_args(hint)[0] if get_origin(hint) is Annotated else hint
            rules = get_args(hint)[1:] if get_origin(hint) is Annotated else ()
            numeric = base in (int, float) or (
                get_origin(base) is types.UnionType and {int, float} & set(get_args(base))
            )
            if numeric and get_origin(base) is not Literal:
                # ColumnRef: a 1-based position (>= 1) where the column is given by number.
                assert any(isinstance(r, Range | MemorySize | ColumnRef) for r in rules), (
                    f"[{name}] {key} declares no range"
                )


def test_non_utf8_settings_file_names_file_and_byte(tmp_path):
    cfg = tmp_path / "latin1.toml"
    cfg.write_bytes('[data]\n# Café in Latin-1\npath = "plays.tsv"\n'.encode("latin-1"))
    offset = len(b"[data]\n# Caf")
    with pytest.raises(SettingsError) as caught:
        load_settings(cfg)
    assert str(caught.value).startswith(f"{cfg}: not UTF-8 text: byte {offset} (line 2) is b'\\xe9'")


def test_invalid_toml_names_file_and_line(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[als]\nfactors = 3\n[lsa\nfactors = 3\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(cfg)
    text = str(caught.value)
    assert text.startswith(f"{cfg}, line 3, column 5: not valid TOML: "), text
    assert "\n" not in text


def test_unreadable_settings_path_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError, match="cannot read the settings file"):
        load_settings(tmp_path)  # a directory


def test_missing_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="does not name a file"):
        load_settings()


def test_every_way_of_building_settings_validates():
    settings = Settings()
    with pytest.raises(
        SettingsError, match=r"^replace\(\): \[als\] alpha = nan: must be a finite number > 0$"
    ):
        settings.replace(als={"alpha": math.nan})
    with pytest.raises(SettingsError, match=r"unknown key\(s\) \['factorz'\] in \[als\]"):
        settings.replace(als={"factorz": 3})
    with pytest.raises(SettingsError, match=r"unknown table 'alss'"):
        settings.replace(alss={})
    with pytest.raises(SettingsError, match=r"^\[runtime\] threads = -1"):
        dataclasses.replace(settings.runtime, threads=-1)
    with pytest.raises(SettingsError, match=r'^replace\(\): \[data\] source = "triples" needs \[data\] path'):
        settings.replace(data={"source": "triples"})


def test_memory_sizes_read_like_duckdb():
    assert parse_size("3GiB") == 3 * 1024**3
    assert parse_size("4GB") == 4 * 1000**3
    assert parse_size(" 1.5 gb ") == 1_500_000_000
    assert parse_size("500M") == 500_000_000
    assert parse_size("10 KiB") == 10 * 1024
    assert parse_size(2.5) == int(2.5 * 1024**3)
    assert parse_size(3) == 3 * 1024**3
    for bad in ("lots", "4", "4GBB", "-1GB", "", "GB", "0MB", "101%", "1e400GB", 1e300, -2, True):
        with pytest.raises(ValueError):
            parse_size(bad)
    # DuckDB itself is the oracle: the byte count we hand it gives the limit it reads from the text.
    conn = duckdb.connect()
    for text in ("3GiB", "4GB", "1.5 gb", "500M", "750 MiB", "2 gigabytes"):
        conn.execute(f"SET memory_limit = '{text}'")
        theirs = conn.execute("SELECT current_setting('memory_limit')").fetchone()[0]
        conn.execute(f"SET memory_limit = '{parse_size(text)}B'")
        assert conn.execute("SELECT current_setting('memory_limit')").fetchone()[0] == theirs, text
    conn.close()


def test_memory_budget_sizes_duckdb_unless_overridden(tmp_path):
    from recsys_assets.definitions import build_definitions

    runtime = Settings().runtime
    assert runtime.memory_budget_bytes == 3 * GiB
    assert runtime.duckdb_memory_limit_bytes == runtime.memory_budget_bytes
    settings = Settings().replace(runtime={"memory_budget": 0.5, "duckdb_memory_limit": "700MiB"})
    assert settings.runtime.memory_budget_bytes == GiB // 2
    assert settings.runtime.duckdb_memory_limit_bytes == 700 * MiB
    warehouse = build_definitions(settings, tmp_path).resources["warehouse"]
    with warehouse.get_connection() as conn:
        assert conn.execute("SELECT current_setting('memory_limit')").fetchone()[0] == "700.0 MiB"
    total = physical_memory_bytes()
    if total is not None:
        half = Settings().replace(runtime={"memory_budget": "50%"}).runtime.memory_budget_bytes
        assert half == total // 2


def test_a_cron_dagster_cannot_schedule_names_the_file(tmp_path):
    from recsys_assets.definitions import build_definitions

    cfg = tmp_path / "my.toml"
    cfg.write_text('[schedule]\ncron = "99 * * * *"\n')
    settings = load_settings(cfg)  # five fields: the field values are Dagster's to judge
    with pytest.raises(SettingsError) as caught:
        build_definitions(settings, tmp_path / "home")
    assert str(caught.value) == f"{cfg}: [schedule] cron = '99 * * * *' is not a valid cron expression"


def test_fingerprint_tracks_values_only(tmp_path):
    a = Settings()
    b = a.replace(als={"factors": 48})
    assert fingerprint(a.als) != fingerprint(b.als)
    assert fingerprint(a.lsa) == fingerprint(b.lsa)
    assert fingerprint(a.als) == fingerprint(Settings().als)
    assert fingerprint({"x": 1, "y": 2}) == fingerprint({"y": 2, "x": 1})
    # An int given for a float setting is stored as the float: file and replace() agree.
    cfg = tmp_path / "r.toml"
    cfg.write_text("[als]\nalpha = 2\n")
    assert fingerprint(load_settings(cfg).als) == fingerprint(a.replace(als={"alpha": 2}).als)
    assert fingerprint(load_settings(cfg).als) == fingerprint(a.replace(als={"alpha": 2.0}).als)


# --- settings that only the data can refute, checked where the asset starts ------------------------


@pytest.fixture(scope="module")
def default_plays():
    """The default synthetic data set's play matrix (3,000 users x 4,000 artists)."""
    from recsys_assets.core.synthetic import generate_plays

    return generate_plays(**dataclasses.asdict(Settings().synthetic)).to_csr()


def test_lsa_factors_beyond_the_matrix_fail_at_the_asset_with_a_settings_error(tmp_path, default_plays):
    import dagster as dg
    from dagster_duckdb import DuckDBResource

    from recsys_assets.assets.factors import build_factor_assets
    from recsys_assets.settings import DataDependentSettingError

    settings = dataclasses.replace(Settings().replace(lsa={"factors": 3000}), source_file="recsys.toml")
    (lsa_factors,) = [a for a in build_factor_assets(settings) if a.keys == {dg.AssetKey("lsa_factors")}]
    warehouse = DuckDBResource(database=str(tmp_path / "w.duckdb"))
    with pytest.raises(DataDependentSettingError) as caught:
        lsa_factors(context=dg.build_asset_context(), matrix=default_plays, warehouse=warehouse)
    assert str(caught.value) == (
        "recsys.toml: [lsa] factors = 3000 must be < min(users, artists) = 3000 of this data set"
    )
    assert not (tmp_path / "w.duckdb").exists()  # refused before touching the warehouse


def test_evaluation_k_beyond_the_catalogue_fails_at_the_asset_with_a_settings_error(tmp_path, default_plays):
    import dagster as dg

    from recsys_assets.assets.evaluation import build_evaluation_assets
    from recsys_assets.core.factorset import FactorSet
    from recsys_assets.pipeline.evaluation import make_split
    from recsys_assets.resources import build_resources
    from recsys_assets.settings import DataDependentSettingError

    settings = Settings().replace(evaluation={"k": 100_000})
    assets = {a.key.to_user_string(): a for a in build_evaluation_assets(settings)}
    split = make_split(default_plays, **settings.evaluation.split_params())
    n_users, n_artists = default_plays.shape
    rng = np.random.default_rng(0)
    factors = FactorSet(
        model="als",
        user_factors=rng.random((n_users, 4), dtype=np.float32),
        item_factors=rng.random((n_artists, 4), dtype=np.float32),
        settings_fingerprint="test",
    )
    resources = build_resources(tmp_path, "1GB")
    with pytest.raises(DataDependentSettingError) as caught:
        assets["evaluation_report"](
            context=dg.build_asset_context(),
            warehouse=resources["warehouse"],
            store=resources["store"],
            train_test_split=split,
            eval_als_factors=factors,
            eval_lsa_factors=dataclasses.replace(factors, model="lsa"),
        )
    assert str(caught.value) == (
        "[evaluation] k = 100000 must be <= the number of artists = 4000 of this data set"
    )


# --- models: which run, and each one's own table -----------------------------------------------------


def test_enabled_models_must_be_registered_and_the_error_names_the_known_ones(tmp_path):
    cfg = tmp_path / "m.toml"
    cfg.write_text('[models]\nenabled = ["als", "nope"]\n')
    with pytest.raises(SettingsError) as caught:
        load_settings(cfg)
    known = ", ".join(f'"{name}"' for name in registry())
    assert known.startswith('"als", "lsa"')
    assert str(caught.value) == (
        f'{cfg}: [models] enabled = ["als", "nope"]: must be a non-empty array of distinct model names '
        f"out of {known}"
    )
    for bad in ([], ["als", "als"], "als", [1]):
        with pytest.raises(SettingsError, match=r"\[models\] enabled"):
            Settings().replace(models={"enabled": bad})
    cfg.write_text('[models]\nenabled = ["lsa"]\n[lsa]\nfactors = 7\n')
    settings = load_settings(cfg)
    assert settings.models.enabled == ("lsa",)
    assert [m.name for m in settings.enabled_models()] == ["lsa"]
    # Every registered model's table is read, enabled or not, and reads as an attribute too.
    assert settings.model_settings("lsa").factors == 7 == settings.lsa.factors
    assert settings.model_settings("als") == Settings().als
    with pytest.raises(SettingsError, match=f"unknown model 'nope'; known models: {', '.join(registry())}"):
        settings.model_settings("nope")
    with pytest.raises(AttributeError):
        _ = settings.nope


def test_model_sections_stay_importable_from_their_model_modules():
    from recsys_assets.core.models.als import AlsSettings
    from recsys_assets.core.models.lsa import LsaSettings

    assert isinstance(Settings().als, AlsSettings) and isinstance(Settings().lsa, LsaSettings)
    assert AlsSettings.TABLE == "als" and LsaSettings.TABLE == "lsa"


def test_type_names_in_messages_cover_booleans_and_unions():
    """A field without a rule of its own is described by its type: booleans and unions included."""
    from dataclasses import dataclass

    from recsys_assets.core.sections import Section

    @dataclass(frozen=True)
    class Probe(Section):
        flag: bool = False
        either: str | int = ""

    Probe(flag=True, either=3)
    with pytest.raises(
        SettingsError, match=r"^\[Probe\] flag = 1: must be true or false \(got an integer\)$"
    ):
        Probe(flag=1)
    with pytest.raises(
        SettingsError, match=r"^\[Probe\] either = 1.5: must be a string or an integer \(got a number\)$"
    ):
        Probe(either=1.5)
    with pytest.raises(
        SettingsError, match=r"either = true: must be a string or an integer \(got a boolean\)$"
    ):
        Probe(either=True)
