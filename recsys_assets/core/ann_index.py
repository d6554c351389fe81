"""The two ANN backends behind one interface: :class:`AnnIndex`, Annoy (angular) and HNSW (hnswlib).

The conventions (cosine similarity from each backend's distance, left-out all-zero vectors, the two
files an index is saved as) are stated in :mod:`recsys_assets.core.ann`, which builds and loads them.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import annoy
import hnswlib
import numpy as np

from recsys_assets.core.files import atomic_path
from recsys_assets.core.threads import resolve_threads

Backend = Literal["annoy", "hnsw"]

# Defaults of this library API. The product passes every value explicitly from its [ann] settings
# (recsys_assets/settings.py: HNSW, M = 32); the measurements behind both are in the README.
DEFAULT_BACKEND: Backend = "hnsw"
DEFAULT_N_TREES = 20
DEFAULT_SEARCH_K = 1000
DEFAULT_M = 16
DEFAULT_EF_CONSTRUCTION = 100
DEFAULT_EF_SEARCH = 50

FORMAT_VERSION = 1


def metadata_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def check_vectors(vectors: np.ndarray, dim: int | None = None) -> np.ndarray:
    if not isinstance(vectors, np.ndarray) or vectors.ndim != 2:
        raise TypeError(
            f"vectors must be a 2-D numpy array, got {type(vectors).__name__} {getattr(vectors, 'shape', '')}"
        )
    if dim is not None and vectors.shape[1] != dim:
        raise ValueError(f"vectors have {vectors.shape[1]} columns but the index has dimension {dim}")
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if not np.isfinite(vectors).all():
        raise ValueError("vectors contain NaN or infinite values; clean the factors first")
    return vectors


def check_k(k: int) -> int:
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    return int(k)


def _drop_ids(
    raw_idx: np.ndarray, raw_sim: np.ndarray, drop: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Keep the first ``k`` results of each row after removing id ``drop[r]`` (or the surplus last one).

    ``raw_*`` hold ``k + 1`` results per row, best first, padded with -1 / -inf.
    """
    removed = raw_idx == drop[:, None]
    # Rows where the dropped id was not found lose their (worst) last result instead.
    removed[~removed.any(axis=1), -1] = True
    keep = np.argsort(removed, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(raw_idx, keep, axis=1), np.take_along_axis(raw_sim, keep, axis=1)


class AnnIndex(ABC):
    """A cosine-similarity nearest-neighbour index over ``n_items`` vectors of dimension ``dim``.

    Item ids are row numbers of the vectors it was built from. Subclasses wrap one library each.
    """

    backend: str

    def __init__(self, dim: int, n_items: int, missing_ids: np.ndarray, params: dict[str, Any]) -> None:
        self.dim = int(dim)
        self.n_items = int(n_items)
        self.missing_ids = np.asarray(missing_ids, dtype=np.int64)
        self.params = dict(params)

    @property
    def n_indexed(self) -> int:
        """Number of items in the index (``n_items`` minus the all-zero ones)."""
        return self.n_items - self.missing_ids.size

    @abstractmethod
    def _search_vectors(self, vectors: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw search: (len(vectors), n) int32 ids and float32 cosines, -1 / -inf padded."""

    @abstractmethod
    def _search_items(self, ids: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        """Raw search with indexed items' own vectors as queries; same output as ``_search_vectors``."""

    @abstractmethod
    def _write_index(self, path: Path) -> None:
        """Write the backend's index file to ``path``."""

    # The one query-time knob of each backend ("search effort"): more is slower and more accurate.
    effort_name: str

    @property
    @abstractmethod
    def query_effort(self) -> int:
        """The current search effort (Annoy ``search_k``, HNSW ``ef_search``)."""

    @abstractmethod
    def set_query_effort(self, effort: int) -> None:
        """Set the search effort used by later queries; recorded in ``params``."""

    @abstractmethod
    def effort_bounds(self, k: int) -> tuple[int, int]:
        """(least, most) useful search effort for ``k`` neighbours per query; the most makes the search
        inspect (about) every indexed item."""

    def query(
        self,
        vectors: np.ndarray,
        k: int,
        exclude_self_ids: np.ndarray | None = None,
        threads: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Approximate top-``k`` items by cosine similarity for each row of ``vectors`` (n, dim).

        ``exclude_self_ids`` (n,) int: an item id to leave out of each row's answer (-1 for none), e.g. the
        query's own id. Returns (n, k) int32 ids, best first, and (n, k) float32 cosine similarities;
        missing results (all-zero query, fewer indexed items than ``k``) are -1 / ``-inf``.
        """
        vectors = check_vectors(vectors, self.dim)
        k = check_k(k)
        n_rows = vectors.shape[0]
        if exclude_self_ids is not None:
            exclude_self_ids = np.asarray(exclude_self_ids, dtype=np.int64)
            if exclude_self_ids.shape != (n_rows,):
                raise ValueError(
                    f"exclude_self_ids must have one id per query row ({n_rows}), got {exclude_self_ids.shape}"
                )
        indices = np.full((n_rows, k), -1, dtype=np.int32)
        sims = np.full((n_rows, k), -np.inf, dtype=np.float32)
        live = np.flatnonzero(vectors.any(axis=1))
        if live.size == 0 or self.n_indexed == 0:
            return indices, sims
        extra = 0 if exclude_self_ids is None else 1
        raw_idx, raw_sim = self._search_vectors(
            vectors[live], min(k + extra, self.n_indexed), resolve_threads(threads)
        )
        raw_idx, raw_sim = self._pad(raw_idx, raw_sim, k + extra)
        if exclude_self_ids is not None:
            raw_idx, raw_sim = _drop_ids(raw_idx, raw_sim, exclude_self_ids[live], k)
        indices[live] = raw_idx
        sims[live] = raw_sim
        return indices, sims

    def neighbours_of_items(
        self, ids: np.ndarray, k: int, threads: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` related items of the items ``ids`` (m,), each item itself excluded.

        Returns (m, k) int32 ids and float32 cosines, -1 / ``-inf`` padded (all of a row for an all-zero
        item, which is not in the index).
        """
        ids = np.asarray(ids, dtype=np.int64)
        k = check_k(k)
        if ids.ndim != 1 or (ids.size and (ids.min() < 0 or ids.max() >= self.n_items)):
            raise ValueError(f"ids must be a 1-D array of item ids in [0, {self.n_items})")
        indices = np.full((ids.size, k), -1, dtype=np.int32)
        sims = np.full((ids.size, k), -np.inf, dtype=np.float32)
        live = np.flatnonzero(~np.isin(ids, self.missing_ids))
        if live.size == 0:
            return indices, sims
        raw_idx, raw_sim = self._search_items(ids[live], min(k + 1, self.n_indexed), resolve_threads(threads))
        raw_idx, raw_sim = self._pad(raw_idx, raw_sim, k + 1)
        indices[live], sims[live] = _drop_ids(raw_idx, raw_sim, ids[live], k)
        return indices, sims

    @staticmethod
    def _pad(raw_idx: np.ndarray, raw_sim: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        missing = width - raw_idx.shape[1]
        if missing <= 0:
            return raw_idx, raw_sim
        return (
            np.pad(raw_idx, ((0, 0), (0, missing)), constant_values=-1),
            np.pad(raw_sim, ((0, 0), (0, missing)), constant_values=-np.inf),
        )

    def save(self, path: Path) -> None:
        """Write the index to ``path`` and its metadata to ``<path>.json``, each atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            self._write_index(tmp)
        metadata = {
            "format": FORMAT_VERSION,
            "backend": self.backend,
            "dim": self.dim,
            "n_items": self.n_items,
            "missing_ids": self.missing_ids.tolist(),
            "params": self.params,
            "index_bytes": path.stat().st_size,
        }
        with atomic_path(metadata_path(path)) as tmp:
            tmp.write_text(json.dumps(metadata))


class AnnoyCosineIndex(AnnIndex):
    """Annoy forest of random-projection trees with angular distance.

    ``search_k`` (nodes inspected per query; -1 means Annoy's default ``n_trees * n_requested``) can be
    changed after building: more is slower and more accurate.
    """

    backend = "annoy"

    def __init__(
        self,
        index: annoy.AnnoyIndex,
        dim: int,
        n_items: int,
        missing_ids: np.ndarray,
        params: dict[str, Any],
    ) -> None:
        super().__init__(dim, n_items, missing_ids, params)
        self._index = index
        self.search_k = int(params.get("search_k", DEFAULT_SEARCH_K))

    effort_name = "search_k"

    @property
    def query_effort(self) -> int:
        return self.search_k

    def set_query_effort(self, effort: int) -> None:
        if effort != -1 and effort < 1:
            raise ValueError(f"search_k must be -1 (Annoy's default) or positive, got {effort}")
        self.search_k = int(effort)
        self.params["search_k"] = int(effort)

    def effort_bounds(self, k: int) -> tuple[int, int]:
        # Annoy's own default inspects n_trees * n nodes for n results; a query asks k + 1 (itself).
        n_trees = self._index.get_n_trees()
        return n_trees * (k + 1), n_trees * max(self.n_indexed, k + 1)

    def _run_chunks(
        self, count: int, n: int, threads: int, search_one: Callable[[int], tuple[list[int], list[float]]]
    ) -> tuple[np.ndarray, np.ndarray]:
        indices = np.full((count, n), -1, dtype=np.int32)
        dists = np.full((count, n), np.inf, dtype=np.float32)

        def work(lo: int, hi: int) -> None:
            for r in range(lo, hi):
                ids, ds = search_one(r)
                indices[r, : len(ids)] = ids
                dists[r, : len(ds)] = ds

        # Annoy releases the GIL while searching, so plain threads run the searches in parallel.
        bounds = np.linspace(0, count, threads * 8 + 1, dtype=np.int64)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for future in [pool.submit(work, lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]:
                future.result()
        sims = (1.0 - 0.5 * dists * dists).astype(np.float32)
        return indices, sims

    def _search_vectors(self, vectors: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        def one(r: int) -> tuple[list[int], list[float]]:
            return self._index.get_nns_by_vector(vectors[r], n, self.search_k, include_distances=True)

        return self._run_chunks(vectors.shape[0], n, threads, one)

    def _search_items(self, ids: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        id_list = ids.tolist()

        def one(r: int) -> tuple[list[int], list[float]]:
            return self._index.get_nns_by_item(id_list[r], n, self.search_k, include_distances=True)

        return self._run_chunks(len(id_list), n, threads, one)

    def _write_index(self, path: Path) -> None:
        # Annoy re-opens (memory-maps) the file it saved; after the rename that is the final file.
        if not self._index.save(str(path)):
            raise OSError(f"Annoy could not write its index to {path}")


class HnswCosineIndex(AnnIndex):
    """hnswlib hierarchical navigable small-world graph in cosine space.

    ``ef_search`` (candidate list size per query, at least ``k``) can be changed after building via
    :meth:`set_ef_search`: more is slower and more accurate.
    """

    backend = "hnsw"

    def __init__(
        self,
        index: hnswlib.Index,
        dim: int,
        n_items: int,
        missing_ids: np.ndarray,
        params: dict[str, Any],
    ) -> None:
        super().__init__(dim, n_items, missing_ids, params)
        self._index = index
        self.set_ef_search(int(params.get("ef_search", DEFAULT_EF_SEARCH)))

    def set_ef_search(self, ef_search: int) -> None:
        """Set the query-time candidate list size (hnswlib ``ef``); recorded in ``params``."""
        if ef_search < 1:
            raise ValueError(f"ef_search must be positive, got {ef_search}")
        self._index.set_ef(int(ef_search))
        self.params["ef_search"] = int(ef_search)

    effort_name = "ef_search"

    @property
    def query_effort(self) -> int:
        return int(self.params["ef_search"])

    def set_query_effort(self, effort: int) -> None:
        self.set_ef_search(effort)

    def effort_bounds(self, k: int) -> tuple[int, int]:
        return k + 1, max(self.n_indexed, k + 1)

    def _search_vectors(self, vectors: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        labels, dists = self._index.knn_query(vectors, k=n, num_threads=threads)
        return labels.astype(np.int32), (1.0 - dists).astype(np.float32)

    def _search_items(self, ids: np.ndarray, n: int, threads: int) -> tuple[np.ndarray, np.ndarray]:
        # The stored (normalised) vectors are the queries; hnswlib returns them in the order asked.
        vectors = np.asarray(self._index.get_items(ids, return_type="numpy"), dtype=np.float32)
        return self._search_vectors(vectors, n, threads)

    def _write_index(self, path: Path) -> None:
        self._index.save_index(str(path))
