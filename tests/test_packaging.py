"""What a regular (non-editable) install ships: the sql/ folder, found through the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from recsys_assets import sql
from recsys_assets.core import loaders

ROOT = Path(__file__).resolve().parents[1]


def _sql_files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*.sql"))}


def test_one_lookup_finds_the_projects_sql_folder():
    assert not hasattr(
        loaders, "sql_dir"
    )  # the loaders read through recsys_assets.sql, no lookup of their own
    assert _sql_files(sql.SQL_DIR) == _sql_files(ROOT / "sql")
    assert loaders.raw_schema_sql() == sql.read_sql("raw_schema.sql")
    assert "CREATE TABLE" in loaders.raw_schema_sql()


@pytest.mark.slow
def test_the_built_package_carries_every_sql_file(tmp_path):
    """setuptools' build_py (what a wheel is made from) on a copy of the project: the built package holds
    every file of sql/ as a regular file, where :mod:`recsys_assets.sql` looks for it."""
    pytest.importorskip("setuptools", reason="the build backend is needed to build the package")
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, project / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("recsys_assets", "sql"):
        shutil.copytree(ROOT / name, project / name, symlinks=True, ignore=ignore)
    build = tmp_path / "build"
    subprocess.run(
        [sys.executable, "-c", "import setuptools; setuptools.setup()", "-q", "build_py", "-d", str(build)],
        cwd=project,
        check=True,
        capture_output=True,
    )
    shipped = build / "recsys_assets" / "sql_files"
    assert not shipped.is_symlink()
    assert _sql_files(shipped) == _sql_files(ROOT / "sql")
    assert (shipped / "queries" / "related_by_name.sql").is_file()


def test_the_users_settings_file_is_not_committed():
    ignored = (ROOT / ".gitignore").read_text().split()
    assert "recsys.toml" in ignored
