"""Answers: related artists, recommendations and alias candidates of every enabled model."""

import time

import dagster as dg
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import reads_settings, table_version
from recsys_assets.assets._tables import table_metadata
from recsys_assets.assets.spark import spark_recommendations_asset
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.pipeline.answers import (
    alias_table,
    planted_alias_recall,
    recommendation_frame,
    recommendation_preview,
    related_lists,
    related_preview,
)
from recsys_assets.pipeline.indexes import answer_method, open_index
from recsys_assets.pipeline.warehouse import replace_table
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import (
    AliasSettings,
    RecommendSettings,
    RelatedSettings,
    RuntimeSettings,
    Settings,
    SyntheticSettings,
)

# Where the id columns of the answer tables come from (column lineage in the UI).
ARTIST_LINEAGE = {"artist_id": [("raw_plays", "artist_id")], "related_id": [("raw_plays", "artist_id")]}
USER_ARTIST_LINEAGE = {"user_id": [("raw_plays", "user_id")], "artist_id": [("raw_plays", "artist_id")]}
ALIAS_LINEAGE = {
    "artist_id": [("raw_plays", "artist_id")],
    "alias_id": [("raw_plays", "artist_id")],
    "shared_listeners": [("raw_plays", "user_id"), ("raw_plays", "artist_id")],
    "artist_listeners": [("raw_plays", "user_id"), ("raw_plays", "artist_id")],
    "alias_listeners": [("raw_plays", "user_id"), ("raw_plays", "artist_id")],
}


def _ins(models: tuple[str, ...], *suffixes: str) -> dict[str, dg.AssetIn]:
    return {f"{m}_{suffix}": dg.AssetIn() for suffix in suffixes for m in models}


@reads_settings("related_artists-3")
def related_artists_asset(
    models: tuple[str, ...],
    related: RelatedSettings,
    sample_seed: int,
    runtime: RuntimeSettings,
    *,
    code_version: str,
) -> dg.AssetsDefinition:
    """``sample_seed``: seed of the artists the recall check samples ([ann] seed)."""

    @dg.asset(
        ins=_ins(models, "ann_index", "factors"),
        group_name="answers",
        kinds={"duckdb"},
        code_version=code_version,
        check_specs=[
            dg.AssetCheckSpec(
                "ann_recall_at_10",
                asset="related_artists",
                blocking=True,
                description=f"ANN recall@10 against exact cosine top-10 >= {related.min_recall_at_10} per model.",
            )
        ],
        description=f"Top-{related.n} related artists of every artist for each model by cosine of its artist "
        "vectors (for nets' mlp: the artist embeddings): exact cosine top-k or the ANN index ([related] "
        "method), with ANN recall@10 against exact checked on a sample.",
    )
    def related_artists(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, store: RecsysStore, **inputs
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        frames, recalls, methods, query = [], {}, {}, {}
        for m in models:
            ref = inputs[f"{m}_ann_index"]
            frame, recalls[m], methods[m] = related_lists(
                ref,
                store.home,
                inputs[f"{m}_factors"],
                related,
                sample_seed,
                runtime.threads,
                context.log.info,
            )
            frames.append(frame)
            if methods[m] == "ann":
                query |= {f"{name}_{m}": value for name, value in ref.query_params.items()}
        table = pd.concat(frames, ignore_index=True)
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "related_artists", table)
            preview = related_preview(conn, model=models[0])
            version = table_version(conn, "related_artists")
            tables = table_metadata(conn, "related_artists", lineage=ARTIST_LINEAGE)
        passed = all(r >= related.min_recall_at_10 for r in recalls.values())
        recall_metadata = {f"recall_at_10_{m}": r for m, r in recalls.items()}
        return dg.MaterializeResult(
            data_version=version,
            metadata=tables
            | {f"preview_{models[0]}": dg.MetadataValue.md(preview)}
            | {"seconds": round(time.perf_counter() - started, 3)}
            | recall_metadata
            | query
            | {f"method_{m}": method for m, method in methods.items()},
            check_results=[
                dg.AssetCheckResult(
                    check_name="ann_recall_at_10",
                    passed=passed,
                    metadata=recall_metadata | {"threshold": related.min_recall_at_10},
                )
            ],
        )

    return related_artists


@reads_settings("recommendations-3")
def recommendations_asset(
    models: tuple[str, ...],
    recommend: RecommendSettings,
    engine: EngineSettings,
    runtime: RuntimeSettings,
    *,
    code_version: str,
) -> dg.AssetsDefinition:
    """``engine``: with kind spark every model's lists are scored on Spark (:mod:`recsys_assets.assets.spark`)."""
    spec = {
        "name": "recommendations",
        "ins": _ins(models, "factors") | {"play_matrix": dg.AssetIn()},
        "group_name": "answers",
        "kinds": {"duckdb"},
        "code_version": code_version,
        "description": f"Top-{recommend.n} artists per user per model, played artists removed: exact, by "
        "the model's own score (the network for nets' mlp), else the factors' inner product.",
    }
    if engine.kind == "spark":
        return spark_recommendations_asset(spec, models, recommend.n, engine)

    @dg.asset(**spec)
    def recommendations(
        context: dg.AssetExecutionContext, warehouse: DuckDBResource, play_matrix: sp.csr_matrix, **inputs
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        frames = [
            recommendation_frame(
                inputs[f"{m}_factors"],
                play_matrix,
                recommend.n,
                models,
                runtime.threads,
                runtime.memory_budget_bytes,
                log=context.log.info,
            )
            for m in models
        ]
        table = pd.concat(frames, ignore_index=True)
        del frames
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "recommendations", table)
            version = table_version(conn, "recommendations")
            metadata = table_metadata(conn, "recommendations", lineage=USER_ARTIST_LINEAGE)
            metadata[f"preview_{models[0]}"] = dg.MetadataValue.md(
                recommendation_preview(conn, model=models[0])
            )
        metadata["seconds"] = round(time.perf_counter() - started, 3)
        return dg.MaterializeResult(data_version=version, metadata=metadata)

    return recommendations


@reads_settings("artist_aliases-4")
def artist_aliases_asset(
    models: tuple[str, ...],
    aliases: AliasSettings,
    related: RelatedSettings,
    synthetic: SyntheticSettings | None,
    runtime: RuntimeSettings,
    *,
    code_version: str,
) -> dg.AssetsDefinition:
    """Neighbours come from the index when ``related`` picks the ANN method (the index's calibrated
    query setting reaches this asset through the index's data version); ``synthetic``: the generator
    settings when the source is synthetic (the planted pairs' recall is reported), else None."""

    @dg.asset(
        ins=_ins(models, "factors", "ann_index") | {"play_matrix": dg.AssetIn()},
        group_name="answers",
        kinds={"duckdb"},
        code_version=code_version,
        description="Candidate duplicate artists ('Arcade Fire' / 'The Arcade Fire'): nearly identical "
        "factors while sharing few or no listeners.",
    )
    def artist_aliases(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBResource,
        store: RecsysStore,
        play_matrix: sp.csr_matrix,
        **inputs,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        frames = []
        for m in models:
            ref = inputs[f"{m}_ann_index"]
            # Large catalogues: the neighbours come from the ANN index, as for related artists.
            index = open_index(ref, store.home, aliases.k) if answer_method(ref, related) == "ann" else None
            frames.append(
                alias_table(
                    inputs[f"{m}_factors"],
                    play_matrix,
                    aliases,
                    runtime.threads,
                    index=index,
                    memory_budget=runtime.memory_budget_bytes,
                    log=context.log.info,
                )
            )
        table = pd.concat(frames, ignore_index=True)
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "artist_aliases", table)
            version = table_version(conn, "artist_aliases")
            metadata = table_metadata(conn, "artist_aliases", lineage=ALIAS_LINEAGE)
        metadata["seconds"] = round(time.perf_counter() - started, 3)
        if synthetic is not None:
            metadata |= planted_alias_recall(table, synthetic)
        return dg.MaterializeResult(data_version=version, metadata=metadata)

    return artist_aliases


def build_answer_assets(settings: Settings) -> list:
    models, runtime = settings.models.enabled, settings.runtime
    synthetic = settings.synthetic if settings.data.source == "synthetic" else None
    return [
        related_artists_asset(models, settings.related, settings.ann.seed, runtime),
        recommendations_asset(models, settings.recommend, settings.engine, runtime),
        artist_aliases_asset(models, settings.aliases, settings.related, synthetic, runtime),
    ]
