"""Access to the project's ``sql/`` folder: DDL and the example queries users run."""

from __future__ import annotations

from pathlib import Path

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def read_sql(name: str) -> str:
    """The text of ``sql/<name>`` (e.g. ``"output_schema.sql"`` or ``"queries/related_by_name.sql"``)."""
    path = SQL_DIR / name
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing: the project's sql/ folder must sit beside recsys_assets/"
        )
    return path.read_text()


def example_queries() -> dict[str, str]:
    """Every example query in ``sql/queries/``, by file stem."""
    return {p.stem: p.read_text() for p in sorted((SQL_DIR / "queries").glob("*.sql"))}
