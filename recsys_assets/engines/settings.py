"""The ``[engine]`` settings table: where the heavy stages run (one machine, or a Spark cluster)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from recsys_assets.core.sections import NonEmpty, Section, SettingsError, _toml

# The hand-off folder under $RECSYS_HOME when ``data_uri`` is empty.
DEFAULT_HANDOFF_DIR = "spark"


@dataclass(frozen=True)
class EngineSettings(Section):
    """Which engine runs the heavy stages (weighting, ALS, all-user recommendations, metrics).

    ``kind = "local"`` runs them here with numba and DuckDB; ``"spark"`` runs them on the Spark cluster at
    ``master`` (``local[*]``: Spark inside this process's JVM; ``spark://host:7077``: a standalone cluster;
    ``yarn``, ``k8s://...``: as Spark reads them). ``conf`` holds extra Spark configuration entries
    (``"spark.executor.memory" = "8g"``). ``data_uri`` is the folder both sides read and write the
    hand-off Parquet files in: empty = ``$RECSYS_HOME/spark`` (fine for ``local[*]`` and a cluster on this
    machine); on a real cluster a shared file system or object store path every executor can reach.
    """

    TABLE: ClassVar[str] = "engine"

    kind: Literal["local", "spark"] = "local"
    master: Annotated[str, NonEmpty()] = "local[*]"
    conf: dict = field(default_factory=dict)
    data_uri: str = ""

    def __post_init__(self) -> None:
        super().__post_init__()
        for key, value in self.conf.items():
            if not key.startswith("spark."):
                raise SettingsError(
                    f"[engine] conf key {key!r}: Spark configuration keys start with 'spark.'"
                )
            if not isinstance(value, str | int | float | bool):
                raise SettingsError(
                    f"[engine] conf {key!r} = {_toml(value)}: must be a string, number or boolean"
                )

    def handoff_uri(self, home: str | Path) -> str:
        """The hand-off folder: ``data_uri``, or ``<home>/spark`` when it is empty (absolute path)."""
        return self.data_uri.rstrip("/") or str(Path(home).resolve() / DEFAULT_HANDOFF_DIR)

    def spark_conf(self) -> dict[str, str]:
        """``conf`` as Spark wants it: every value a string (booleans lower-case, as Spark spells them)."""
        return {key: _spark_value(value) for key, value in sorted(self.conf.items())}


def _spark_value(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)
