"""Dagster resources: the artifact IO manager and the store of published outputs."""

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from recsys_assets.catalog import Catalog
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.split import Split
from recsys_assets.pipeline.tuning import TunedSettings
from recsys_assets.sql import read_sql
from recsys_assets.storage import (
    ARTIFACT_DIR,
    WAREHOUSE_FILE,
    load_artifact,
    register_artifact_type,
    save_artifact,
)

# The names artifact headers store for these types (never a module path: classes may move).
register_artifact_type("factor_set", FactorSet)
register_artifact_type("split", Split)
register_artifact_type("tuned_settings", TunedSettings)

# Materialization metadata key holding the content hash of the artifact the IO manager wrote: the
# planner compares it with the file's header to tell a file replaced by a run killed before Dagster
# recorded it (or altered since).
CONTENT_HASH_KEY = "content_hash"


class ArtifactIOManager(dg.ConfigurableIOManager):
    """Stores asset values that are not tables (sparse matrices, factor sets, splits, index references)
    as ``.npz`` files under ``<root>/<asset>.npz``, written atomically (temp file + rename), their
    content hash recorded in the materialization and checked on every load."""

    root: str

    def path_for(self, key: dg.AssetKey) -> Path:
        return Path(self.root) / f"{'__'.join(key.path)}.npz"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return  # a table asset (MaterializeResult): its data is in DuckDB, not in a file
        stored = save_artifact(obj, self.path_for(context.asset_key))
        context.add_output_metadata(
            {
                "path": dg.MetadataValue.path(str(stored.path)),
                "bytes": stored.nbytes,
                CONTENT_HASH_KEY: stored.content_hash,
            }
        )

    def load_input(self, context: dg.InputContext) -> Any:
        return load_artifact(self.path_for(context.asset_key))


class RecsysStore(dg.ConfigurableResource):
    """Everything under ``$RECSYS_HOME`` that is not the warehouse connection itself: the artifact
    folder (files other than ``.npz`` values, e.g. Annoy indexes, HTML reports) and the published
    catalog that readers query."""

    home: str

    @property
    def catalog(self) -> Catalog:
        return Catalog(self.home)

    def artifact_path(self, name: str) -> Path:
        path = Path(self.home) / ARTIFACT_DIR / name
        path.parent.mkdir(parents=True, exist_ok=True)
        return path


@contextlib.contextmanager
def warehouse_connection(warehouse: DuckDBResource) -> Iterator[duckdb.DuckDBPyConnection]:
    """A warehouse connection with the output tables created; closed even when the step fails."""
    home = Path(warehouse.database).parent
    (home / "tmp").mkdir(parents=True, exist_ok=True)  # the home, and DuckDB's spill folder
    with warehouse.get_connection() as conn:
        try:
            conn.execute(read_sql("output_schema.sql"))
            yield conn
        finally:
            conn.close()


def build_resources(home: Path, duckdb_memory_limit: str) -> dict[str, Any]:
    """The resources every asset uses, rooted at ``home`` (nothing is created until an asset writes:
    ``recsys status`` builds them for a home that may not exist)."""
    return {
        "io_manager": ArtifactIOManager(root=str(home / ARTIFACT_DIR)),
        "warehouse": DuckDBResource(
            database=str(home / WAREHOUSE_FILE),
            connection_config={"memory_limit": duckdb_memory_limit, "temp_directory": str(home / "tmp")},
        ),
        "store": RecsysStore(home=str(home)),
    }
