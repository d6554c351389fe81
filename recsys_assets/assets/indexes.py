"""Indexes: one ANN index per enabled model over its artist factors, query effort calibrated."""

from pathlib import Path

import dagster as dg

from recsys_assets.assets._common import data_version, markdown_table, reads_settings
from recsys_assets.core.factorset import FactorSet
from recsys_assets.pipeline.indexes import IndexRef, build_ann_index
from recsys_assets.resources import RecsysStore
from recsys_assets.settings import AnnSettings, RelatedSettings, RuntimeSettings, Settings


@reads_settings("ann_index-3")
def index_asset(
    name: str, ann: AnnSettings, related: RelatedSettings, runtime: RuntimeSettings, *, code_version: str
) -> dg.AssetsDefinition:
    """The ``{name}_ann_index`` asset. ``ann``: the settings of the backend in use
    (:meth:`AnnSettings.in_use`); calibration reads ``related`` (answer size, recall target, whether
    the index is used at all)."""

    @dg.asset(
        name=f"{name}_ann_index",
        ins={"factors": dg.AssetIn(f"{name}_factors")},
        group_name="indexes",
        kinds={ann.backend},
        code_version=code_version,
        description=f"{ann.backend} index (angular / cosine) over the {name} artist factors, its "
        "query effort calibrated to the recall target.",
    )
    def _index(store: RecsysStore, factors: FactorSet) -> dg.Output[IndexRef]:
        suffix = "ann" if ann.backend == "annoy" else "hnsw"
        path = store.artifact_path(f"{name}_ann_index.{suffix}")
        ref = build_ann_index(factors, ann, path, runtime.threads, Path(store.home), related)
        metadata = {"backend": ref.backend, "artists": ref.n_items, "dim": ref.dim} | ref.build_params
        metadata |= {"query_method": ref.query_method} | ref.query_params
        if ref.calibration is not None:
            summary = {k: v for k, v in ref.calibration.items() if k != "trials"}
            metadata |= summary | {"calibration_trials": markdown_table(ref.calibration["trials"])}
        return dg.Output(
            ref,
            # The query setting is part of what readers get: a new one re-runs them, the same stops.
            data_version=data_version(ref.file_hash, ref.query_method, ref.query_params),
            metadata=metadata,
        )

    return _index


def build_index_assets(settings: Settings) -> list:
    ann = settings.ann.in_use()
    return [index_asset(m, ann, settings.related, settings.runtime) for m in settings.models.enabled]
