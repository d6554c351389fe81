import dataclasses
import tomllib
from pathlib import Path

import pytest

from recsys_assets.settings import Settings, SettingsError, fingerprint, load_settings, settings_from_dict

EXAMPLE = Path(__file__).resolve().parent.parent / "recsys.example.toml"


def test_example_file_documents_every_setting_with_its_default():
    raw = tomllib.loads(EXAMPLE.read_text())
    defaults = Settings()
    for section in dataclasses.fields(Settings):
        if section.name == "source_file":
            continue
        table = getattr(defaults, section.name)
        documented = raw[section.name]
        assert set(documented) == {f.name for f in dataclasses.fields(table)}, section.name
        for f in dataclasses.fields(table):
            assert documented[f.name] == getattr(table, f.name), f"[{section.name}] {f.name}"
    assert load_settings(EXAMPLE) == defaults


def test_file_values_are_typed_and_relative_paths_resolved(tmp_path):
    (tmp_path / "plays.tsv").write_text("")
    cfg = tmp_path / "recsys.toml"
    cfg.write_text('[data]\nsource = "lastfm360k"\npath = "plays.tsv"\n[als]\nfactors = 32\nalpha = 2\n')
    settings = load_settings(cfg)
    assert settings.als.factors == 32 and settings.als.alpha == 2.0 and isinstance(settings.als.alpha, float)
    assert settings.data.path == str(tmp_path / "plays.tsv")
    assert settings.source_file == str(cfg)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"als": {"factor": 3}}, r"unknown key\(s\) \['factor'\] in \[als\]"),
        ({"alss": {}}, r"unknown table\(s\) \['alss'\]"),
        ({"als": {"factors": "64"}}, r"\[als\] factors = '64' should be int"),
        ({"als": {"factors": 0}}, r"\[als\] factors must be > 0"),
        ({"ann": {"backend": "faiss"}}, r"\[ann\] backend = 'faiss' is not one of"),
        ({"data": {"source": "hetrec"}}, r"needs \[data\] path"),
        ({"evaluation": {"test_fraction": 1.0}}, r"test_fraction"),
        ({"related": {"min_recall_at_10": 1.5}}, r"min_recall_at_10 must be in \[0, 1\]"),
        (
            {"schedule": {"timezone": "Mars/Olympus"}},
            r"\[schedule\] timezone = 'Mars/Olympus' is not a known",
        ),
        ({"schedule": {"cron": "daily"}}, r"\[schedule\] cron = 'daily' needs 5 fields"),
        ({"ann": {"search_k": 0}}, r"\[ann\] search_k must be -1"),
        ({"weighting": {"confidence_epsilon": 0.0}}, r"confidence_epsilon must be > 0"),
        ({"synthetic": {"n_alias_pairs": -1}}, r"n_alias_pairs must be >= 0"),
    ],
)
def test_bad_settings_name_the_key(raw, message):
    with pytest.raises(SettingsError, match=message):
        settings_from_dict(raw, where="my.toml")


def test_invalid_toml_names_the_file(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[als\nfactors = 3")
    with pytest.raises(SettingsError, match="bad.toml: not valid TOML"):
        load_settings(cfg)


def test_missing_config_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(SettingsError, match="does not name a file"):
        load_settings()


def test_fingerprint_tracks_values_only():
    a = Settings()
    b = a.replace(als={"factors": 48})
    assert fingerprint(a.als) != fingerprint(b.als)
    assert fingerprint(a.lsa) == fingerprint(b.lsa)
    assert fingerprint(a.als) == fingerprint(Settings().als)
    assert fingerprint({"x": 1, "y": 2}) == fingerprint({"y": 2, "x": 1})
