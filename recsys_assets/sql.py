"""Access to the project's ``sql/`` folder: DDL, the loaders' SQL and the example queries users run.

The folder lives at the top of the repository; ``recsys_assets/sql_files`` links to it, and a wheel
carries a copy there (``[tool.setuptools.package-data]``), so the same lookup works in a checkout, an
editable install and a regular install.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

# The package is installed as plain files (never zipped), so its resources are real paths.
SQL_DIR = Path(str(files("recsys_assets").joinpath("sql_files")))


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (e.g. ``"output_schema.sql"`` or ``"queries/related_by_name.sql"``)."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the package's sql_files (a link to the project's sql/ folder) is incomplete"
        )
    return path.read_text(encoding="utf-8")


def example_queries() -> dict[str, str]:
    """Every example query in ``sql/queries/``, by file stem."""
    return {p.stem: p.read_text(encoding="utf-8") for p in sorted((SQL_DIR / "queries").glob("*.sql"))}
