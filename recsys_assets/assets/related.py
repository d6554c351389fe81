"""Answers: ANN indexes per factor set, related artists, recommendations and alias candidates."""

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, data_version, markdown_table, table_version
from recsys_assets.core.aliases import DEFAULT_MEMORY_BUDGET, alias_candidates
from recsys_assets.core.ann import (
    AnnIndex,
    build_index,
    calibrate_query,
    load_index,
    recall_at_k,
    related_items,
)
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.topk import cosine_topk, topk_dot
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import AliasSettings, AnnSettings, RelatedSettings, Settings
from recsys_assets.storage import (
    ARTIFACT_DIR,
    file_hash,
    record_version,
    register_artifact_type,
    verify_file,
)

MODELS = ("als", "lsa")


@register_artifact_type("ann_index_ref")
@dataclass
class IndexRef:
    """Where a built ANN index lives and how it was built (the index file itself is not an ``.npz``).
    ``file_hash`` is the index file's :func:`~recsys_assets.storage.file_hash`, checked before it is opened.
    ``path`` is relative to ``$RECSYS_HOME`` (a moved or copied home opens its own index): resolve it
    with :meth:`file`.
    """

    model: str
    backend: str
    path: str
    build_params: dict
    n_items: int
    dim: int
    file_hash: str
    # How answers are read from the index: "ann" with ``query_params`` (the calibrated search effort,
    # e.g. {"search_k": 4000}), or "exact" when no effort within the budget reached the recall target.
    query_method: str = "ann"
    query_params: dict = field(default_factory=dict)
    # Calibration.summary() plus its trials; None when related artists do not use the index.
    calibration: dict | None = None

    def stored_files(self) -> dict[str, str]:
        """The index file (named relative to the artifacts folder, as the planner reads it) with its
        content hash, recorded in the artifact header for the planner."""
        return {str(Path(self.path).relative_to(ARTIFACT_DIR)): self.file_hash}

    def file(self, home: str | Path) -> Path:
        """The index file inside ``home``."""
        return Path(home) / self.path


def build_ann_index(
    factors: FactorSet,
    ann: AnnSettings,
    path: Path,
    threads: int,
    home: Path,
    related: RelatedSettings | None = None,
) -> IndexRef:
    """Build the configured index over the artist factors and save it atomically at ``path`` (a file
    under ``home``, recorded relative to it).

    When related artists will use the index (``related`` given and :func:`related_method` says "ann"),
    its query effort is first calibrated (:func:`~recsys_assets.core.ann.calibrate_query`) until
    recall@10 of top-``related.n`` answers reaches ``related.min_recall_at_10 + ann.recall_margin`` on
    ``ann.calibration_sample`` seeded artists, a sample drawn independently of the asset check's.
    """
    index = build_index(
        factors.item_factors,
        ann.backend,
        n_trees=ann.n_trees,
        search_k=ann.search_k,
        M=ann.hnsw_m,
        ef_construction=ann.ef_construction,
        ef_search=ann.ef_search,
        seed=ann.seed,
        threads=threads,
    )
    n_items = int(factors.item_factors.shape[0])
    calibration = None
    if related is not None and related_method(related, n_items) == "ann":
        found = calibrate_query(
            index,
            factors.item_factors,
            related.n,
            min(1.0, related.min_recall_at_10 + ann.recall_margin),
            recall_k=10,
            sample=ann.calibration_sample,
            # Not the seed of the check's sample (related_lists), so the check measures independently.
            seed=ann.seed + 1,
            budget_s=ann.query_budget_s or None,
            threads=threads,
        )
        calibration = found.summary() | {"trials": [dict(t) for t in found.trials]}
    index.save(path)
    return IndexRef(
        model=factors.model,
        backend=ann.backend,
        path=str(Path(path).relative_to(home)),
        build_params=ann.build_params(),
        n_items=n_items,
        dim=int(factors.item_factors.shape[1]),
        file_hash=file_hash(path),
        query_method="ann" if calibration is None else calibration["method"],
        query_params={index.effort_name: index.query_effort},
        calibration=calibration,
    )


def related_method(related: RelatedSettings, n_artists: int) -> str:
    """``exact`` or ``ann``: the configured method, ``auto`` resolved by catalogue size."""
    if related.method != "auto":
        return related.method
    return "exact" if n_artists <= related.exact_max_artists else "ann"


def answer_method(ref: IndexRef, related: RelatedSettings) -> str:
    """How answers over ``ref``'s factors are computed: ``exact`` when [related] says so or when the
    index's calibration fell back to exact top-k, else ``ann``."""
    if related_method(related, ref.n_items) == "exact" or ref.query_method == "exact":
        return "exact"
    return "ann"


def open_index(ref: IndexRef, home: str | Path, k: int) -> AnnIndex:
    """Load a built index (its file under ``home``) with its calibrated query setting, widened for ``k``
    neighbours if needed.

    The calibrated setting is part of the reference (and of the index asset's data version), so a new
    calibration re-runs exactly the readers.

    The file is checked against the hash recorded at build time first: the index libraries trust their
    input (an overwritten file is served silently, random bytes abort the process).
    """
    verify_file(ref.file(home), ref.file_hash)
    index = load_index(ref.file(home))
    effort = int(ref.query_params.get(index.effort_name, index.query_effort))
    least, _ = index.effort_bounds(k)
    index.set_query_effort(max(effort, least))
    return index


def related_lists(
    ref: IndexRef,
    home: str | Path,
    factors: FactorSet,
    related: RelatedSettings,
    seed: int,
    threads: int,
) -> tuple[pd.DataFrame, float, str]:
    """Top-``n`` related artists (cosine) for every artist, the method used (:func:`answer_method`),
    and recall@10 of the answers against exact cosine top-10 on ``recall_sample`` seeded random artists
    with a non-zero vector (1.0 by construction for the exact method)."""
    n, method = related.n, answer_method(ref, related)
    if method == "exact":
        ids, scores = cosine_topk(factors.item_factors, n, threads=threads)
        return top_n_frame(ref.model, ids, scores, "artist_id", "related_id"), 1.0, method
    ids, scores = related_items(open_index(ref, home, n), n, threads=threads)
    nonzero = np.flatnonzero(np.linalg.norm(factors.item_factors, axis=1) > 0)
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(nonzero, size=min(related.recall_sample, nonzero.size), replace=False))
    k = min(10, n)
    exact, _ = cosine_topk(factors.item_factors, k, query_ids=queries, threads=threads)
    recall = recall_at_k(ids[queries, :k], exact, k)
    return top_n_frame(ref.model, ids, scores, "artist_id", "related_id"), float(recall), method


def top_n_frame(
    model: str,
    ids: np.ndarray,
    scores: np.ndarray,
    id_column: str,
    item_column: str,
    models: tuple[str, ...] | None = None,
) -> pd.DataFrame:
    """Long-format table (model, id, rank, item, score) of a top-N matrix, padding (-1) dropped.

    ``model`` is a categorical column (one byte a row, not a Python string per row) over ``models``
    (default: just ``model``); frames built over the same ``models`` concatenate without turning it
    into an object column.
    """
    categories = models if models is not None else (model,)
    if model not in categories:
        raise ValueError(f"model {model!r} is not one of the categories {categories}")
    rows, ranks = np.nonzero(ids >= 0)
    codes = np.full(rows.size, categories.index(model), dtype=np.int8)
    return pd.DataFrame(
        {
            "model": pd.Categorical.from_codes(codes, categories=list(categories)),
            id_column: rows.astype(np.int32),
            "rank": (ranks + 1).astype(np.int32),
            item_column: ids[rows, ranks].astype(np.int32),
            "score": scores[rows, ranks].astype(np.float32),
        }
    )


def replace_table(conn, table: str, frame: pd.DataFrame) -> dg.DataVersion:
    """Replace every row of ``table`` (written by the asset of the same name) with ``frame`` and record
    its data version (:func:`table_version`, returned) in the version ledger, in one transaction."""
    conn.register("replacement_frame", frame)
    conn.execute("BEGIN TRANSACTION")
    conn.execute(f"DELETE FROM {table}")
    conn.execute(f"INSERT INTO {table} BY NAME SELECT * FROM replacement_frame")
    version = table_version(conn, table)
    record_version(conn, table, version.value)
    conn.execute("COMMIT")
    conn.unregister("replacement_frame")
    return version


def related_preview(
    conn, table: str = "related_artists", model: str = "als", artists: int = 5, n: int = 5
) -> str:
    """Markdown preview: the most played artists and their closest related artists, by name."""
    rows = conn.execute(
        f"""
        WITH top AS (
            SELECT artist_id FROM plays GROUP BY artist_id ORDER BY count(*) DESC, artist_id LIMIT {artists}
        )
        SELECT a.name, string_agg(b.name, ', ' ORDER BY r.rank)
        FROM top JOIN {table} r USING (artist_id)
        JOIN artists a ON a.artist_id = r.artist_id JOIN artists b ON b.artist_id = r.related_id
        WHERE r.model = ? AND r.rank <= {n}
        GROUP BY a.name ORDER BY a.name
        """,
        [model],
    ).fetchall()
    lines = ["| artist | related |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    return "\n".join(lines)


def build_related_assets(settings: Settings) -> list:
    threads = settings.runtime.threads
    memory_budget = settings.runtime.memory_budget_bytes
    ann, related, recommend, aliases = settings.ann, settings.related, settings.recommend, settings.aliases

    def index_asset(model: str) -> dg.AssetsDefinition:
        @dg.asset(
            name=f"{model}_ann_index",
            ins={"factors": dg.AssetIn(f"{model}_factors")},
            group_name="indexes",
            kinds={ann.backend},
            # Calibration reads [related] (answer size, recall target, whether the index is used at all).
            code_version=code_version(
                "ann_index-2",
                ann.build_params(),
                ann.query_params(),
                related.n,
                related.min_recall_at_10,
                related.method,
                related.exact_max_artists,
            ),
            description=f"{ann.backend} index (angular / cosine) over the {model} artist factors, its "
            "query effort calibrated to the recall target.",
        )
        def _index(store: RecsysStore, factors: FactorSet) -> dg.Output[IndexRef]:
            suffix = "ann" if ann.backend == "annoy" else "hnsw"
            path = store.artifact_path(f"{model}_ann_index.{suffix}")
            ref = build_ann_index(factors, ann, path, threads, Path(store.home), related)
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

    index_assets = [index_asset(model) for model in MODELS]

    @dg.asset(
        ins={f"{m}_ann_index": dg.AssetIn() for m in MODELS} | {f"{m}_factors": dg.AssetIn() for m in MODELS},
        group_name="answers",
        kinds={"duckdb"},
        code_version=code_version("related_artists-2", related),
        check_specs=[
            dg.AssetCheckSpec(
                "ann_recall_at_10",
                asset="related_artists",
                blocking=True,
                description=f"ANN recall@10 against exact cosine top-10 >= {related.min_recall_at_10} per model.",
            )
        ],
        description=f"Top-{related.n} related artists of every artist for each model: exact cosine top-k or the "
        "ANN index ([related] method), with ANN recall@10 against exact checked on a sample.",
    )
    def related_artists(
        warehouse: DuckDBResource,
        store: RecsysStore,
        als_ann_index: IndexRef,
        lsa_ann_index: IndexRef,
        als_factors: FactorSet,
        lsa_factors: FactorSet,
    ) -> dg.MaterializeResult:
        frames, recalls, methods, query = [], {}, {}, {}
        for ref, factors in ((als_ann_index, als_factors), (lsa_ann_index, lsa_factors)):
            frame, recalls[ref.model], methods[ref.model] = related_lists(
                ref, store.home, factors, related, ann.seed, threads
            )
            frames.append(frame)
            if methods[ref.model] == "ann":
                query |= {f"{name}_{ref.model}": value for name, value in ref.query_params.items()}
        table = pd.concat(frames, ignore_index=True)
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "related_artists", table)
            preview = related_preview(conn)
            version = table_version(conn, "related_artists")
        passed = all(r >= related.min_recall_at_10 for r in recalls.values())
        recall_metadata = {f"recall_at_10_{m}": r for m, r in recalls.items()}
        return dg.MaterializeResult(
            data_version=version,
            metadata={"dagster/row_count": len(table), "preview_als": dg.MetadataValue.md(preview)}
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

    @dg.asset(
        ins={f"{m}_factors": dg.AssetIn() for m in MODELS} | {"play_matrix": dg.AssetIn()},
        group_name="answers",
        kinds={"duckdb"},
        code_version=code_version("recommendations-2", recommend),
        description=f"Top-{recommend.n} artists per user per model (exact inner product), played artists removed.",
    )
    def recommendations(
        warehouse: DuckDBResource,
        als_factors: FactorSet,
        lsa_factors: FactorSet,
        play_matrix: sp.csr_matrix,
    ) -> dg.MaterializeResult:
        frames = []
        for factors in (als_factors, lsa_factors):
            # One fused pass per score tile (GEMM + heap), tiles sized from the memory budget.
            ids, scores = topk_dot(
                factors.user_factors,
                factors.item_factors,
                recommend.n,
                exclude=play_matrix,
                threads=threads,
                memory_budget_bytes=memory_budget,
            )
            frames.append(top_n_frame(factors.model, ids, scores, "user_id", "artist_id", models=MODELS))
            del ids, scores
        table = pd.concat(frames, ignore_index=True)
        del frames
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "recommendations", table)
            version = table_version(conn, "recommendations")
        return dg.MaterializeResult(data_version=version, metadata={"dagster/row_count": len(table)})

    @dg.asset(
        ins={f"{m}_factors": dg.AssetIn() for m in MODELS}
        | {f"{m}_ann_index": dg.AssetIn() for m in MODELS}
        | {"play_matrix": dg.AssetIn()},
        group_name="answers",
        kinds={"duckdb"},
        # Neighbours come from the index when [related] picks the ANN method, so its settings count too.
        # (The index's calibrated query setting reaches this asset through the index's data version.)
        code_version=code_version("artist_aliases-3", aliases, related.method, related.exact_max_artists),
        description="Candidate duplicate artists ('Arcade Fire' / 'The Arcade Fire'): nearly identical "
        "factors while sharing few or no listeners.",
    )
    def artist_aliases(
        warehouse: DuckDBResource,
        store: RecsysStore,
        als_factors: FactorSet,
        lsa_factors: FactorSet,
        als_ann_index: IndexRef,
        lsa_ann_index: IndexRef,
        play_matrix: sp.csr_matrix,
    ) -> dg.MaterializeResult:
        frames = []
        for factors, ref in ((als_factors, als_ann_index), (lsa_factors, lsa_ann_index)):
            # Large catalogues: the neighbours come from the ANN index, as for related artists.
            index = (
                open_index(ref, store.home, aliases.neighbours)
                if answer_method(ref, related) == "ann"
                else None
            )
            frames.append(
                alias_table(factors, play_matrix, aliases, threads, index=index, memory_budget=memory_budget)
            )
        table = pd.concat(frames, ignore_index=True)
        metadata: dict = {"dagster/row_count": len(table)}
        with warehouse_connection(warehouse) as conn:
            replace_table(conn, "artist_aliases", table)
            version = table_version(conn, "artist_aliases")
        if settings.data.source == "synthetic":
            metadata |= planted_alias_recall(table, settings)
        return dg.MaterializeResult(data_version=version, metadata=metadata)

    return [*index_assets, related_artists, recommendations, artist_aliases]


def alias_table(
    factors: FactorSet,
    plays: sp.csr_matrix,
    aliases: AliasSettings,
    threads: int,
    index: AnnIndex | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> pd.DataFrame:
    """Alias candidates of one factor set, as configured in ``[aliases]``, with a ``model`` column;
    neighbours from ``index`` when given, else exact cosine top-k; working memory blocked to about
    ``memory_budget`` bytes."""
    frame = alias_candidates(
        factors.item_factors,
        plays,
        k=aliases.neighbours,
        min_factor_similarity=aliases.min_factor_similarity,
        max_listener_overlap=aliases.max_listener_overlap,
        min_listeners=aliases.min_listeners,
        index=index,
        threads=threads,
        memory_budget_bytes=memory_budget,
        min_score=aliases.min_score,
    )
    return frame.assign(model=factors.model)


def planted_alias_recall(table: pd.DataFrame, settings: Settings) -> dict[str, float]:
    """Synthetic data only: recall of the generator's planted alias pairs among each model's top
    ``2 x n_pairs`` candidates (the synthetic loader keeps the generator's indices as artist ids)."""
    planted = generate_plays(**dataclasses.asdict(settings.synthetic)).alias_pairs
    wanted = {(int(min(a, b)), int(max(a, b))) for a, b in planted}
    out = {}
    for model, group in table.groupby("model"):
        top = group.nlargest(2 * len(wanted), "score")
        found = {
            (int(min(a, b)), int(max(a, b))) for a, b in zip(top["artist_id"], top["alias_id"], strict=True)
        }
        out[f"planted_alias_recall_{model}"] = len(found & wanted) / max(len(wanted), 1)
    return out
