"""ANN indexes over a model's artist factors: build (with query calibration), reference, open."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from recsys_assets.core.ann import AnnIndex, build_index, calibrate_query, load_index
from recsys_assets.core.factorset import FactorSet
from recsys_assets.settings import AnnSettings, RelatedSettings
from recsys_assets.storage import ARTIFACT_DIR, file_hash, register_artifact_type, verify_file


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
        M=ann.M,
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
