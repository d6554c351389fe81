"""Approximate nearest neighbours by cosine similarity: Annoy (angular) and HNSW (hnswlib) behind one API.

Both backends answer "which items point in the most similar direction", reported as cosine similarity
``v_q . v_i / (||v_q|| ||v_i||)``:

- Annoy's angular distance is ``d = sqrt(2 - 2 cos)``, so ``cos = 1 - d^2 / 2``;
- hnswlib's cosine distance is ``d = 1 - cos``.

All-zero vectors (items nobody interacted with) have no direction. They are left out of the index, so
they are never returned as a neighbour, and as queries they get no neighbours (index -1, similarity
``-inf``), the same convention as :func:`recsys_assets.core.topk.cosine_topk`.

An index is saved as two files: the backend's own file at ``path`` and a small JSON beside it
(``<path>.json``) with everything needed to load it again (backend, dimension, item count, the
left-out ids, parameters, and the index file's size as a consistency check). Both are written
atomically (:func:`recsys_assets.core.files.atomic_path`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import annoy
import hnswlib
import numpy as np

from recsys_assets.core.ann_index import (
    DEFAULT_BACKEND,
    DEFAULT_EF_CONSTRUCTION,
    DEFAULT_EF_SEARCH,
    DEFAULT_M,
    DEFAULT_N_TREES,
    DEFAULT_SEARCH_K,
    FORMAT_VERSION,
    AnnIndex,
    AnnoyCosineIndex,
    Backend,
    HnswCosineIndex,
    check_k,
    check_vectors,
    metadata_path,
)
from recsys_assets.core.slices import ProgressFn
from recsys_assets.core.threads import resolve_threads
from recsys_assets.core.topk import cosine_topk

__all__ = [
    "DEFAULT_BACKEND",
    "AnnIndex",
    "AnnoyCosineIndex",
    "Calibration",
    "HnswCosineIndex",
    "build_index",
    "calibrate_query",
    "load_index",
    "recall_at_k",
    "related_items",
]


def build_index(
    vectors: np.ndarray,
    backend: Backend = DEFAULT_BACKEND,
    *,
    n_trees: int = DEFAULT_N_TREES,
    search_k: int = DEFAULT_SEARCH_K,
    M: int = DEFAULT_M,  # noqa: N803 - hnswlib's own name for the graph degree
    ef_construction: int = DEFAULT_EF_CONSTRUCTION,
    ef_search: int = DEFAULT_EF_SEARCH,
    seed: int = 0,
    threads: int | None = None,
) -> AnnIndex:
    """Build a cosine nearest-neighbour index over the rows of ``vectors`` (n_items, dim), float32.

    Annoy uses ``n_trees`` and ``search_k``; HNSW uses ``M``, ``ef_construction`` and ``ef_search``.
    All-zero rows are left out (see the module docstring). ``seed`` fixes Annoy's tree splits and
    hnswlib's level assignment; a multi-threaded HNSW build still inserts in a timing-dependent order,
    so only a single-threaded build is reproducible bit for bit.
    """
    vectors = check_vectors(vectors)
    n_items, dim = vectors.shape
    if dim < 1:
        raise ValueError("vectors must have at least one column")
    n_threads = resolve_threads(threads)
    nonzero = vectors.any(axis=1)
    live = np.flatnonzero(nonzero)
    missing = np.flatnonzero(~nonzero)
    if backend == "annoy":
        if n_trees < 1:
            raise ValueError(f"n_trees must be positive, got {n_trees}")
        index = annoy.AnnoyIndex(dim, "angular")
        index.set_seed(int(seed))
        for i in live.tolist():
            index.add_item(i, vectors[i])
        index.build(int(n_trees), n_jobs=n_threads)
        params = {"n_trees": int(n_trees), "search_k": int(search_k), "seed": int(seed)}
        return AnnoyCosineIndex(index, dim, n_items, missing, params)
    if backend == "hnsw":
        if M < 2 or ef_construction < 1:
            raise ValueError(
                f"M must be >= 2 and ef_construction >= 1, got M={M}, ef_construction={ef_construction}"
            )
        index = hnswlib.Index(space="cosine", dim=dim)
        index.init_index(
            max_elements=max(live.size, 1),
            M=int(M),
            ef_construction=int(ef_construction),
            random_seed=int(seed),
        )
        if live.size:
            index.add_items(vectors[live], live, num_threads=n_threads)
        params = {
            "M": int(M),
            "ef_construction": int(ef_construction),
            "ef_search": int(ef_search),
            "seed": int(seed),
        }
        return HnswCosineIndex(index, dim, n_items, missing, params)
    raise ValueError(f"backend must be 'annoy' or 'hnsw', got {backend!r}")


def load_index(path: Path) -> AnnIndex:
    """Load an index saved by :meth:`AnnIndex.save` (Annoy memory-maps its file; hnswlib reads it in)."""
    path = Path(path)
    meta_path = metadata_path(path)
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"need both {path} and its metadata {meta_path}; build and save the index first"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(
            f"{meta_path} has format {meta.get('format')!r}, expected {FORMAT_VERSION}; rebuild it"
        )
    if path.stat().st_size != meta["index_bytes"]:
        raise ValueError(
            f"{path} is {path.stat().st_size} bytes but its metadata says {meta['index_bytes']}: "
            "the two files come from different builds; rebuild the index"
        )
    dim, n_items, params = int(meta["dim"]), int(meta["n_items"]), meta["params"]
    missing = np.asarray(meta["missing_ids"], dtype=np.int64)
    if meta["backend"] == "annoy":
        index = annoy.AnnoyIndex(dim, "angular")
        index.load(str(path))
        return AnnoyCosineIndex(index, dim, n_items, missing, params)
    if meta["backend"] == "hnsw":
        index = hnswlib.Index(space="cosine", dim=dim)
        index.load_index(str(path))
        return HnswCosineIndex(index, dim, n_items, missing, params)
    raise ValueError(f"{meta_path} names unknown backend {meta['backend']!r}")


# With progress, batches of about 1 % of the items (at least this many), so reports come often while each
# batch still spreads over every thread; every item's search is independent of its batch.
_PROGRESS_BATCH = 2048


def related_items(
    index: AnnIndex,
    k: int,
    threads: int | None = None,
    batch: int = 65536,
    progress: ProgressFn | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` related items (itself excluded) for every item ``0 .. n_items - 1`` of ``index``.

    Items are searched ``batch`` at a time (bounding the temporary Python lists Annoy returns), each batch
    on ``threads`` threads. Returns (n_items, k) int32 ids, best first, and float32 cosine similarities;
    all-zero items get a row of -1 / ``-inf``. ``progress``: called as ``progress(items_done, n_items)``
    after each batch (then at most ``max(2048, n_items / 100)`` items); the result is the same without it.
    """
    k = check_k(k)
    if batch < 1:
        raise ValueError(f"batch must be positive, got {batch}")
    n_items = index.n_items
    if progress is not None:
        batch = min(batch, max(_PROGRESS_BATCH, -(-n_items // 100)))
    indices = np.empty((n_items, k), dtype=np.int32)
    sims = np.empty((n_items, k), dtype=np.float32)
    for lo in range(0, n_items, batch):
        hi = min(lo + batch, n_items)
        indices[lo:hi], sims[lo:hi] = index.neighbours_of_items(np.arange(lo, hi), k, threads=threads)
        if progress is not None:
            progress(hi, n_items)
    return indices, sims


def recall_at_k(approx: np.ndarray, exact: np.ndarray, k: int) -> float:
    """Mean over queries of ``|A_q ∩ E_q| / |E_q|``, the share of true neighbours an approximate search found.

    ``A_q`` is the set of ids in ``approx[q, :k]`` and ``E_q`` those in ``exact[q, :k]``, both ignoring
    -1 padding, so ``|E_q| = min(k, number of true neighbours)``. Queries with no true neighbour (empty
    ``E_q``) are left out of the mean; if every query is, the result is NaN. Shapes: (n, >= k) int.
    """
    k = check_k(k)
    approx = np.asarray(approx)
    exact = np.asarray(exact)
    if approx.ndim != 2 or exact.ndim != 2 or approx.shape[0] != exact.shape[0]:
        raise ValueError(
            f"approx {approx.shape} and exact {exact.shape} must be 2-D with the same number of rows"
        )
    if approx.shape[1] < k or exact.shape[1] < k:
        raise ValueError(f"need at least k={k} columns, got approx {approx.shape[1]}, exact {exact.shape[1]}")
    a = approx[:, :k]
    e = exact[:, :k]
    # hit[q, j]: exact neighbour j of query q (not padding) appears among the approximate ones.
    hit = ((e[:, :, None] == a[:, None, :]) & (e[:, :, None] >= 0)).any(axis=2)
    true_counts = (e >= 0).sum(axis=1)
    rows = true_counts > 0
    if not rows.any():
        return float("nan")
    return float(np.mean(hit[rows].sum(axis=1) / true_counts[rows]))


@dataclass(frozen=True)
class Calibration:
    """The query setting chosen by :func:`calibrate_query`, and the measurements that chose it.

    ``method`` is ``"ann"`` (query the index with ``effort_name = effort``) or ``"exact"`` (no search
    effort within the budget reached ``target``: answer with exact top-k instead). ``recall`` is the
    recall@``recall_k`` measured on the calibration sample at the chosen effort (for ``"exact"``, the best
    the index reached). ``trials`` lists every effort tried in order, each ``{effort, recall,
    query_all_s}`` where ``query_all_s`` extrapolates the sample's query time to every indexed item;
    ``exact_all_s`` does the same for exact top-k and ``budget_s`` is the limit that was applied.
    """

    method: Literal["ann", "exact"]
    effort_name: str
    effort: int
    recall: float
    target: float
    k: int
    recall_k: int
    sample: int
    budget_s: float
    exact_all_s: float
    seconds: float
    trials: tuple[dict[str, float], ...]

    @property
    def query_params(self) -> dict[str, int]:
        """``{effort_name: effort}`` for the ANN method, empty for exact."""
        return {self.effort_name: self.effort} if self.method == "ann" else {}

    def summary(self) -> dict[str, Any]:
        """Flat, JSON-able description (everything but the trials)."""
        return {
            "method": self.method,
            self.effort_name: self.effort,
            "calibration_recall": round(self.recall, 4),
            "calibration_target": self.target,
            "calibration_k": self.k,
            "calibration_sample": self.sample,
            "calibration_budget_s": round(self.budget_s, 2),
            "exact_all_estimate_s": round(self.exact_all_s, 2),
            "calibration_s": round(self.seconds, 2),
        }


def calibrate_query(
    index: AnnIndex,
    vectors: np.ndarray,
    k: int,
    target: float,
    *,
    recall_k: int = 10,
    sample: int = 1000,
    seed: int = 0,
    budget_s: float | None = None,
    threads: int | None = None,
) -> Calibration:
    """Find the least search effort at which ``index`` answers top-``k`` queries with recall@``recall_k``
    >= ``target`` against exact cosine top-``recall_k``, and set it on ``index``.

    ``vectors`` (n_items, dim) are the vectors the index was built from. The recall is measured on
    ``sample`` seeded random items with a non-zero vector (exact answers by
    :func:`~recsys_assets.core.topk.cosine_topk`), querying each item's neighbours as
    :meth:`AnnIndex.neighbours_of_items` does. Rule: start at the index's current effort (at least the
    least useful one for ``k``); double it until the sample's recall reaches ``target`` or, when it
    already does, halve it until it no longer does; then try the geometric midpoint between the failing
    and the passing effort once, and keep the least effort that passed. The search gives up (method
    ``"exact"``, effort left at the best tried) when the next doubling would make querying every item
    cost more than ``budget_s`` (estimated from the sample's query time; default: the estimated time of
    exact top-k for every item, measured on the same sample, so the index is not used where exact
    answers would be cheaper) or when the effort already covers every item.
    """
    vectors = check_vectors(vectors, index.dim)
    if vectors.shape[0] != index.n_items:
        raise ValueError(f"vectors have {vectors.shape[0]} rows but the index covers {index.n_items} items")
    k = check_k(k)
    recall_k = min(check_k(recall_k), k)
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target recall must be in (0, 1], got {target}")
    if sample < 1:
        raise ValueError(f"sample must be positive, got {sample}")
    started = time.perf_counter()
    live = np.flatnonzero(vectors.any(axis=1))
    rng = np.random.default_rng(seed)
    queries = np.sort(rng.choice(live, size=min(sample, live.size), replace=False))
    scale = live.size / max(queries.size, 1)

    # Timings extrapolate per-query costs: warm up first (numba loads its kernels, pages fault in), and
    # take exact top-k's per-query cost from the difference of two sample sizes, because each call also
    # normalises every vector, a fixed cost that would otherwise be multiplied by the scale.
    cosine_topk(vectors, recall_k, query_ids=queries[:2], threads=threads)
    index.neighbours_of_items(queries[:2], k, threads=threads)
    half = queries.size // 2
    t = time.perf_counter()
    cosine_topk(vectors, recall_k, query_ids=queries[:half], threads=threads)
    t_half = time.perf_counter() - t
    t = time.perf_counter()
    exact, _ = cosine_topk(vectors, recall_k, query_ids=queries, threads=threads)
    t_full = time.perf_counter() - t
    per_query = (t_full - t_half) / max(queries.size - half, 1)
    if per_query <= 0:  # timing noise: fall back to the plain average
        per_query = t_full / max(queries.size, 1)
    exact_all_s = per_query * live.size
    budget = exact_all_s if budget_s is None else float(budget_s)

    least, most = index.effort_bounds(k)
    trials: list[dict[str, float]] = []

    def trial(effort: int) -> tuple[float, float]:
        index.set_query_effort(effort)
        t = time.perf_counter()
        ids, _ = index.neighbours_of_items(queries, k, threads=threads)
        query_all_s = (time.perf_counter() - t) * scale
        recall = recall_at_k(ids, exact, recall_k) if queries.size else 1.0
        trials.append({"effort": effort, "recall": recall, "query_all_s": query_all_s})
        return recall, query_all_s

    def result(method: Literal["ann", "exact"], effort: int, recall: float) -> Calibration:
        index.set_query_effort(effort)
        return Calibration(
            method=method,
            effort_name=index.effort_name,
            effort=effort,
            recall=recall,
            target=float(target),
            k=k,
            recall_k=recall_k,
            sample=int(queries.size),
            budget_s=budget,
            exact_all_s=exact_all_s,
            seconds=time.perf_counter() - started,
            trials=tuple(trials),
        )

    # Doubling (or halving, when the starting effort already passes) brackets the least passing effort
    # between a failing and a passing one; one geometric midpoint then narrows it.
    effort = min(max(least, index.query_effort), most)
    failing = None
    recall, query_all_s = trial(effort)
    if recall >= target:
        passing = (effort, recall)
        while effort > least:
            effort = max(least, effort // 2)
            recall, _ = trial(effort)
            if recall < target:
                failing = effort
                break
            passing = (effort, recall)
    else:
        while recall < target:
            failing = effort
            if effort >= most or 2 * query_all_s > budget:
                best = max(trials, key=lambda r: r["recall"])
                return result("exact", int(best["effort"]), float(best["recall"]))
            effort = min(2 * effort, most)
            recall, query_all_s = trial(effort)
        passing = (effort, recall)
    if failing is not None:
        middle = int(round(math.sqrt(failing * passing[0])))
        if failing < middle < passing[0]:
            middle_recall, _ = trial(middle)
            if middle_recall >= target:
                passing = (middle, middle_recall)
    return result("ann", *passing)
