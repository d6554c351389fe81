"""Ranking metrics for implicit-feedback recommenders, over all users in one pass.

Setting: a model scores every item for a user; the user's *candidates* are all items that are not in
their train row (train items are never recommended). A user is *evaluated* when their test row has at
least one item; ``P_u`` is the number of test items of user ``u`` and ``N_u = n_items - |train_u|`` the
number of candidates. All averages "over users" are over evaluated users.

Top-k metrics (from the ``k`` best candidates, best first; ``hit_u(i)`` = 1 if position ``i`` holds
a test item). These follow implicit 0.7.3's ``ranking_metrics_at_k`` so numbers are comparable:

* precision@k = sum_u hits_u / sum_u min(k, P_u)   (pooled over users, denominator min(k, P_u) as in
  implicit, so a user with fewer than k test items can still reach 1)
* recall@k = mean_u hits_u / P_u
* MAP@k = mean_u [ sum_i hit_u(i) * hits_u(<=i) / (i + 1) ] / min(k, P_u)
* NDCG@k = mean_u [ sum_i hit_u(i) / log2(i + 2) ] / [ sum_{j < min(k, P_u)} 1 / log2(j + 2) ]
* coverage@k = |union of evaluated users' top-k lists| / n_items

Full-ranking metrics (every candidate is ranked, nothing sampled). With ``s`` the user's scores, for a
test item ``i`` let ``above_i = #{candidates j != i: s_j > s_i} + 0.5 * #{candidates j != i: s_j == s_i}``
(ties count half: the expected position under a random tie-break, so a constant model scores 0.5):

* rank_ui = above_i / (N_u - 1), the percentile position among candidates (0 = top, 1 = bottom)
* MPR (Hu, Koren & Volinsky 2008) = sum r_ui * rank_ui / sum r_ui over all test pairs, ``r`` = test value
  (e.g. plays); ``mpr_unweighted`` uses r = 1. Random scores give 0.5. Pairs with ``N_u = 1`` are skipped.
* AUC_u = 1 - sum_{i in test_u} negabove_i / (P_u * (N_u - P_u)), where ``negabove_i`` counts only the
  non-test candidates in ``above_i`` (test items are positives, every other candidate a negative);
  AUC = mean_u AUC_u over users with at least one negative. This is the full AUC; implicit's ``auc`` is a
  different, top-k-limited estimate (see :func:`evaluate_ranked_lists`).

Ties in the top-k lists go to the lower item index.

Speed: for factor models the score matrix is never materialised. Each numba thread takes a block of
users, computes ``block_size x item_block_size`` score tiles (L2-sized, within the memory budget) with a
single-threaded BLAS GEMM, and folds each tile in one pass while it is in cache: train and test items
are overwritten with -inf, then each 512-score chunk (L1-resident) gets a vectorised "anything above
the k-th best?" check guarding the scalar heap update, and one vectorised pass per test score, in
ascending order, adding ``2 * #{s > t} + #{s == t}`` (float32 lanes, exact at this size) and stopping at
the first test score nothing in the chunk reaches. Test items' own scores are computed once up front
and merged into the heap at the end. Cost is one GEMM plus about ``P_u / 16`` vector compare-adds per
score (random factors, where nothing stops early, are the slow case).

Baselines cost no score GEMM: :func:`evaluate_popularity` ranks every user by one shared sorted list
and gives exactly the report of the rank-1 popularity model; :func:`expected_random` gives the random
baseline's metrics as exact expectations over a uniformly random ranking (not a sample).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.metrics_kernels import (
    finish_heaps,
    fold_factor_tiles,
    fold_score_rows,
    list_metrics,
    order_by_score,
    overlap,
    popularity_fold,
    random_block,
    rank_metrics,
    test_scores,
)
from recsys_assets.core.slices import ProgressFn, report_in_steps, run_sliced
from recsys_assets.core.sparse import canonical_csr
from recsys_assets.core.threads import blas_threads, numba_threads
from recsys_assets.core.topk import DEFAULT_MEMORY_BUDGET, as_factor_matrix, tile_shape

__all__ = [
    "MetricsError",
    "RankingReport",
    "ScoreFn",
    "TopKReport",
    "evaluate_factors",
    "evaluate_ranked_lists",
    "evaluate_popularity",
    "evaluate_scores",
    "expected_random",
    "popularity_scores",
    "random_scores",
]

ScoreFn = Callable[[np.ndarray], np.ndarray]
"""Maps user ids (int64, shape (B,)) to their scores for every item (float, shape (B, n_items))."""


class MetricsError(ValueError):
    """Inputs to an evaluation are inconsistent (shapes, overlap of train and test, bad values)."""


@dataclass(frozen=True)
class RankingReport:
    """Ranking quality of one model on one split; definitions in the module docstring.

    ``n_users`` is the number of evaluated users (users with at least one test item).
    """

    k: int
    n_users: int
    precision: float
    recall: float
    map: float
    ndcg: float
    auc: float
    mpr: float
    mpr_unweighted: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        """All fields as a flat ``{name: value}`` dict (``k`` and ``n_users`` as floats)."""
        return {name: float(value) for name, value in asdict(self).items()}


@dataclass(frozen=True)
class TopKReport:
    """Metrics that need only the top-k lists; ``auc_at_k`` is implicit 0.7.3's limited AUC."""

    k: int
    n_users: int
    precision: float
    recall: float
    map: float
    ndcg: float
    auc_at_k: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        """All fields as a flat ``{name: value}`` dict (``k`` and ``n_users`` as floats)."""
        return {name: float(value) for name, value in asdict(self).items()}


# ---------------------------------------------------------------------------------------------------
# validation and orchestration


@dataclass(frozen=True)
class _Interactions:
    """Train/test in the index form the kernels take, plus the evaluated users."""

    n_users: int
    n_items: int
    tr_ptr: np.ndarray
    tr_idx: np.ndarray
    te_ptr: np.ndarray
    te_idx: np.ndarray
    te_val: np.ndarray
    users: np.ndarray


def _as_csr(name: str, X: object) -> sp.csr_matrix:
    if not sp.issparse(X) or X.ndim != 2:
        raise TypeError(f"{name} must be a 2-D scipy sparse matrix, got {type(X).__name__}")
    return canonical_csr(X)


def _interactions(train: object, test: object) -> _Interactions:
    train = _as_csr("train", train)
    test = _as_csr("test", test)
    if train.shape != test.shape:
        raise MetricsError(f"train has shape {train.shape} but test has {test.shape}; they must match")
    te_val = test.data.astype(np.float64)
    if not np.isfinite(te_val).all() or (te_val < 0).any():
        raise MetricsError("test values weight the MPR and must be finite and >= 0")
    tr_ptr = train.indptr.astype(np.int64)
    tr_idx = train.indices.astype(np.int32)
    te_ptr = test.indptr.astype(np.int64)
    te_idx = test.indices.astype(np.int32)
    shared = overlap(tr_ptr, tr_idx, te_ptr, te_idx)
    if shared:
        raise MetricsError(
            f"train and test share {shared} (user, item) pairs; evaluate on a disjoint split "
            "(recsys_assets.core.split)"
        )
    users = np.flatnonzero(np.diff(te_ptr) > 0).astype(np.int64)
    if users.size == 0:
        raise MetricsError("test has no interactions, so no user can be evaluated")
    return _Interactions(*train.shape, tr_ptr, tr_idx, te_ptr, te_idx, te_val, users)


def _check_k(k: int, n_items: int) -> int:
    if isinstance(k, bool) or int(k) != k or not 1 <= k <= n_items:
        raise MetricsError(f"k must be an integer in [1, n_items={n_items}], got {k!r}")
    return int(k)


def _as_factors(name: str, x: object, rows: int) -> np.ndarray:
    x = as_factor_matrix(name, x, error=MetricsError)
    if x.shape[0] != rows:
        raise MetricsError(f"{name} has {x.shape[0]} rows but the interaction matrix needs {rows}")
    return x


def _report(
    data: _Interactions,
    k: int,
    top_i: np.ndarray,
    q: np.ndarray,
    twice_neg: np.ndarray,
) -> RankingReport:
    lists = _topk_report(top_i, data.users, data.te_ptr, data.te_idx, k, data.n_items)
    auc, rank = rank_metrics(data.users, data.tr_ptr, data.te_ptr, q, twice_neg, data.n_items)
    ranked = ~np.isnan(rank)
    weights = data.te_val[ranked]
    return RankingReport(
        k=k,
        n_users=lists.n_users,
        precision=lists.precision,
        recall=lists.recall,
        map=lists.map,
        ndcg=lists.ndcg,
        auc=float(np.nanmean(auc)) if (~np.isnan(auc)).any() else float("nan"),
        mpr=float(weights @ rank[ranked] / weights.sum()) if weights.sum() > 0 else float("nan"),
        mpr_unweighted=float(rank[ranked].mean()) if ranked.any() else float("nan"),
        coverage=lists.coverage,
    )


def _topk_report(
    recommended: np.ndarray, users: np.ndarray, te_ptr: np.ndarray, te_idx: np.ndarray, k: int, n_items: int
) -> TopKReport:
    per_user = list_metrics(recommended, users, te_ptr, te_idx, k, n_items)
    n_pos = np.diff(te_ptr)[users].astype(np.float64)
    shown = recommended[:, :k]
    auc_at_k = per_user[:, 3]
    return TopKReport(
        k=k,
        n_users=int(users.size),
        precision=float(per_user[:, 0].sum() / np.minimum(k, n_pos).sum()),
        recall=float((per_user[:, 0] / n_pos).mean()),
        map=float(per_user[:, 1].mean()),
        ndcg=float(per_user[:, 2].mean()),
        auc_at_k=float(np.nanmean(auc_at_k)) if (~np.isnan(auc_at_k)).any() else float("nan"),
        coverage=float(np.unique(shown[shown >= 0]).size / n_items),
    )


def _new_state(data: _Interactions, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Empty top-k heaps per evaluated user and the ``2 * above + tied`` count per test entry."""
    top_s = np.full((data.users.size, k), -np.inf, dtype=np.float32)
    top_i = np.full((data.users.size, k), -1, dtype=np.int32)
    twice_neg = np.zeros(data.te_idx.size, dtype=np.int64)
    return top_s, top_i, twice_neg


def evaluate_factors(
    user_factors: np.ndarray,
    item_factors: np.ndarray,
    train: sp.spmatrix | sp.sparray,
    test: sp.spmatrix | sp.sparray,
    k: int = 10,
    threads: int | None = None,
    block_size: int | None = None,
    item_block_size: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    progress: ProgressFn | None = None,
) -> RankingReport:
    """Evaluate the dot-product model ``score[u, i] = user_factors[u] . item_factors[i]`` on a split.

    Computes every metric in the module docstring over all users with a test item, ranking each user's
    full candidate set (all non-train items) in float32. Memory beyond the inputs: the top-k lists,
    a few counters per test entry, and one ``block_size x item_block_size`` float32 tile per thread.

    Args:
        user_factors: (n_users, f) float array (used as float32).
        item_factors: (n_items, f) float array (used as float32).
        train: (n_users, n_items) sparse; its stored entries are excluded from each user's ranking.
        test: (n_users, n_items) sparse, disjoint from train; stored entries are the positives and their
            values (>= 0) the MPR weights.
        k: list length for the top-k metrics, 1 <= k <= n_items.
        threads: numba threads (each runs its own single-threaded GEMMs); None = all cores.
        block_size, item_block_size: users x items per score tile and thread (default 256 x 1024, 1 MiB:
            one core's L2 here); see :func:`recsys_assets.core.topk.tile_shape`. Results do not depend
            on them.
        memory_budget_bytes: the tiles of all threads stay within half of it (shrinking the defaults).
        progress: called as ``progress(users_done, users_evaluated)`` while the tiles are
            folded (:func:`recsys_assets.core.slices.run_sliced`); the report is the same without it.
    """
    data = _interactions(train, test)
    k = _check_k(k, data.n_items)
    user_factors = _as_factors("user_factors", user_factors, data.n_users)
    item_factors = _as_factors("item_factors", item_factors, data.n_items)
    if user_factors.shape[1] != item_factors.shape[1]:
        raise MetricsError(
            f"user_factors have {user_factors.shape[1]} columns but item_factors {item_factors.shape[1]}"
        )
    try:
        rows, cols = tile_shape(
            data.users.size, data.n_items, threads, block_size, item_block_size, memory_budget_bytes
        )
    except ValueError as error:
        raise MetricsError(str(error)) from None
    top_s, top_i, twice_neg = _new_state(data, k)
    with numba_threads(threads):
        q = test_scores(user_factors, item_factors, data.users, data.te_ptr, data.te_idx)
        order, ts = order_by_score(data.users, data.te_ptr, q)

        def fold(first_block: int, end_block: int) -> None:
            fold_factor_tiles(
                user_factors,
                item_factors,
                data.users,
                data.tr_ptr,
                data.tr_idx,
                data.te_ptr,
                data.te_idx,
                order,
                ts,
                rows,
                cols,
                top_s,
                top_i,
                twice_neg,
                first_block,
                end_block,
            )

        n_eval = data.users.size
        n_blocks = -(-n_eval // rows)
        run_sliced(fold, n_blocks, threads, progress, lambda b: min(b * rows, n_eval), n_eval)
        finish_heaps(data.users, data.te_ptr, data.te_idx, q, top_s, top_i)
        return _report(data, k, top_i, q, twice_neg)


def evaluate_scores(
    score_fn: ScoreFn,
    train: sp.spmatrix | sp.sparray,
    test: sp.spmatrix | sp.sparray,
    k: int = 10,
    threads: int | None = None,
    block_size: int | None = None,
    memory_budget_bytes: int = DEFAULT_MEMORY_BUDGET,
    progress: ProgressFn | None = None,
) -> RankingReport:
    """Evaluate any model given as ``score_fn(user_ids) -> (len(user_ids), n_items)`` scores.

    Same metrics, candidate sets, tie rules and kernel as :func:`evaluate_factors` (only where the score
    rows come from differs), so baselines and factor models are comparable. ``score_fn`` is called on
    consecutive blocks of at most ``block_size`` evaluated users (ascending ids) under ``threads`` BLAS
    threads; its rows are copied to float32 and must be finite. Without ``block_size``, a block holds as
    many users (at most 256) as fit twice (the function's result and the float32 copy) in
    ``memory_budget_bytes``. ``progress``: as in :func:`evaluate_factors`, after each block.
    """
    data = _interactions(train, test)
    k = _check_k(k, data.n_items)
    if memory_budget_bytes < 1:
        raise MetricsError(f"memory_budget_bytes must be positive, got {memory_budget_bytes}")
    if block_size is None:
        block_size = max(1, min(256, memory_budget_bytes // (2 * 4 * data.n_items)))
    if block_size < 1:
        raise MetricsError(f"block_size must be positive, got {block_size}")
    top_s, top_i, twice_neg = _new_state(data, k)
    q = np.zeros(data.te_idx.size, dtype=np.float32)
    order = np.zeros(data.te_idx.size, dtype=np.int64)
    ts = np.zeros(data.te_idx.size, dtype=np.float32)
    report = report_in_steps(progress, data.users.size)
    for e0 in range(0, data.users.size, block_size):
        block = data.users[e0 : e0 + block_size]
        with blas_threads(threads):
            scores = np.array(score_fn(block), dtype=np.float32, order="C", copy=True)
        if scores.shape != (block.size, data.n_items):
            raise MetricsError(
                f"score_fn returned shape {scores.shape} for {block.size} users; "
                f"expected ({block.size}, {data.n_items})"
            )
        if not np.isfinite(scores).all():
            raise MetricsError("score_fn returned NaN or infinite scores")
        with numba_threads(threads):
            fold_score_rows(
                scores,
                e0,
                data.users,
                data.tr_ptr,
                data.tr_idx,
                data.te_ptr,
                data.te_idx,
                q,
                order,
                ts,
                top_s,
                top_i,
                twice_neg,
            )
        report(min(e0 + block_size, data.users.size))
    with numba_threads(threads):
        finish_heaps(data.users, data.te_ptr, data.te_idx, q, top_s, top_i)
        return _report(data, k, top_i, q, twice_neg)


def evaluate_popularity(
    train: sp.spmatrix | sp.sparray,
    test: sp.spmatrix | sp.sparray,
    k: int = 10,
    threads: int | None = None,
) -> RankingReport:
    """The popularity baseline (every user's scores are :func:`popularity_scores`) without a score GEMM.

    Exactly the report :func:`evaluate_factors` gives for the rank-1 model
    ``(np.ones((n_users, 1)), popularity_scores(train)[:, None])`` — same candidates, tie rules and
    arithmetic — but every user is ranked by one shared sorted list: a user's top-k is the first k items
    of the global order not in their train row, and a test item's count of candidates scoring above it is
    the global count minus the user's own train and test items above it. Cost: a sort of the items plus
    O(k + (train + test items) log) per user.
    """
    data = _interactions(train, test)
    k = _check_k(k, data.n_items)
    pop = popularity_scores(train)
    by_rank = np.lexsort((np.arange(data.n_items), -pop)).astype(np.int64)
    # Items scoring strictly above / exactly at each test entry's score, over all items.
    q = pop[data.te_idx]
    ascending = np.sort(pop)
    n_greater = (data.n_items - np.searchsorted(ascending, q, side="right")).astype(np.int64)
    n_equal = (
        np.searchsorted(ascending, q, side="right") - np.searchsorted(ascending, q, side="left")
    ).astype(np.int64)
    top_s, top_i, twice_neg = _new_state(data, k)
    with numba_threads(threads):
        popularity_fold(
            pop,
            by_rank,
            n_greater,
            n_equal,
            data.users,
            data.tr_ptr,
            data.tr_idx,
            data.te_ptr,
            data.te_idx,
            top_i,
            twice_neg,
        )
        return _report(data, k, top_i, q, twice_neg)


def expected_random(
    train: sp.spmatrix | sp.sparray, test: sp.spmatrix | sp.sparray, k: int = 10
) -> RankingReport:
    """The random baseline's metrics as exact expectations, without scoring anything.

    The model ranks each evaluated user's ``N`` candidates in a uniformly random order (i.i.d. continuous
    scores). With ``P`` test items and ``L = min(k, N)`` list slots, position ``i`` holds a test item with
    probability ``P / N`` and, given that, ``i * (P - 1) / (N - 1)`` test items are expected above it, so:

    * E[hits] = L P / N; precision = sum E[hits] / sum min(k, P); recall = mean L / N
    * E[AP] = sum_{i<L} (P / N) (1 + i (P - 1) / (N - 1)) / (i + 1) / min(k, P)
    * E[NDCG] = sum_{i<L} (P / N) / log2(i + 2) / IDCG
    * AUC, MPR and unweighted MPR = 0.5 (each pair is ordered either way with probability 1/2)
    * coverage = sum over items of P(the item is in some evaluated user's list) / n_items, with
      P = 1 - prod over users with the item among their candidates of (1 - L / N).

    Precision, recall, MAP, NDCG, AUC and MPR are the expectations of :func:`evaluate_scores` with
    :func:`random_scores` (up to its rare ties, which it breaks by item index); coverage is the expected
    size of the union divided by ``n_items``. The numbers are expectations, not a sample.
    """
    data = _interactions(train, test)
    k = _check_k(k, data.n_items)
    users = data.users
    n_pos = np.diff(data.te_ptr)[users].astype(np.float64)
    n_cand = (data.n_items - np.diff(data.tr_ptr)[users]).astype(np.float64)
    slots = np.minimum(k, n_cand)
    cutoff = np.minimum(k, n_pos)
    p_hit = n_pos / n_cand
    positions = np.arange(k, dtype=np.float64)
    inside = positions[None, :] < slots[:, None]
    # Expected test items above a hit at position i; with a single candidate there is no "other".
    others = np.divide(n_pos - 1, n_cand - 1, out=np.zeros_like(n_pos), where=n_cand > 1)
    ap = (inside * p_hit[:, None] * (1 + positions[None, :] * others[:, None]) / (positions + 1)).sum(axis=1)
    discount = 1.0 / np.log2(positions + 2)
    dcg = (inside * p_hit[:, None] * discount[None, :]).sum(axis=1)
    idcg = np.cumsum(discount)[cutoff.astype(np.int64) - 1]
    hits = slots * p_hit
    has_negatives = (n_cand - n_pos) > 0
    ranked = n_cand > 1
    weights = data.te_val[np.repeat(ranked, n_pos.astype(np.int64))]
    # log P(item j in nobody's list) = sum over evaluated users with j a candidate of log(1 - L / N);
    # users whose whole candidate set is listed (L = N) list every candidate for certain.
    miss = 1.0 - slots / n_cand
    certain = miss == 0
    log_miss = np.log(np.where(certain, 1.0, miss))
    in_train = sp.csr_matrix(
        (np.ones(data.tr_idx.size), data.tr_idx, data.tr_ptr), shape=(data.n_users, data.n_items)
    )[users]
    train_log = in_train.T @ log_miss
    train_certain = in_train.T @ certain.astype(np.float64)
    log_none = log_miss.sum() - train_log
    none_certain = (certain.sum() - train_certain) > 0
    covered = np.where(none_certain, 1.0, -np.expm1(log_none))
    return RankingReport(
        k=k,
        n_users=int(users.size),
        precision=float(hits.sum() / cutoff.sum()),
        recall=float((hits / n_pos).mean()),
        map=float((ap / cutoff).mean()),
        ndcg=float((dcg / idcg).mean()),
        auc=0.5 if has_negatives.any() else float("nan"),
        mpr=0.5 if weights.sum() > 0 else float("nan"),
        mpr_unweighted=0.5 if ranked.any() else float("nan"),
        coverage=float(covered.sum() / data.n_items),
    )


def popularity_scores(train: sp.spmatrix | sp.sparray) -> np.ndarray:
    """Popularity baseline: item score = number of distinct train users with a stored entry for it.

    Returns (n_items,) float32. Evaluate it as a rank-1 factor model, which is exact (1.0 * count):
    ``evaluate_factors(np.ones((n_users, 1)), popularity_scores(train)[:, None], train, test)``, or via
    :func:`evaluate_scores` with a function that repeats the row; both give the same report.
    """
    train = _as_csr("train", train)
    return np.bincount(train.indices, minlength=train.shape[1]).astype(np.float32)


def random_scores(n_items: int, seed: int = 0) -> ScoreFn:
    """Random baseline for :func:`evaluate_scores`: i.i.d. uniform [0, 1) scores per (user, item).

    Scores come from a counter-based hash of ``(seed, user, item)``, so they do not depend on how
    users are blocked or on the thread count. Values are multiples of 2**-24, so ties occur and are
    handled by the half-credit rule. Expected MPR and AUC are 0.5.
    """
    if n_items < 1:
        raise MetricsError(f"n_items must be positive, got {n_items}")

    def score(users: np.ndarray) -> np.ndarray:
        return random_block(np.asarray(users, dtype=np.int64), int(n_items), int(seed))

    return score


def evaluate_ranked_lists(
    recommended: np.ndarray, test: sp.spmatrix | sp.sparray, k: int = 10, threads: int | None = None
) -> TopKReport:
    """Top-k metrics of given recommendation lists (for lists produced elsewhere, e.g. by implicit).

    Args:
        recommended: (n_users, >= k) int array; row u is user u's list, best first; entries < 0 mean
            "no item" and count as misses. Only the first ``k`` columns are used; rows of users without
            test items are ignored. The lists are taken as given (no train filtering here).
        test: (n_users, n_items) sparse; stored entries are the positives.
        k: cutoff.
        threads: numba threads.

    Returns:
        TopKReport with precision, recall, MAP, NDCG, coverage as in the module docstring and
        ``auc_at_k``, implicit 0.7.3's limited AUC: walking the list, each non-test entry earns the
        number of test items above it; then ``(hits + P) / 2 * (n_items - P - misses)`` is added and the
        sum divided by ``P * (n_items - P)``. Note its negatives include train items (n_items - P), so it
        is not the full AUC reported by :func:`evaluate_factors`.
    """
    test = _as_csr("test", test)
    n_users, n_items = test.shape
    recommended = np.asarray(recommended)
    if (
        recommended.ndim != 2
        or recommended.shape[0] != n_users
        or not np.issubdtype(recommended.dtype, np.integer)
    ):
        raise MetricsError(
            f"recommended must be an integer array of shape ({n_users}, >= k), got "
            f"{recommended.dtype} {recommended.shape}"
        )
    k = _check_k(k, n_items)
    if recommended.shape[1] < k:
        raise MetricsError(f"recommended has {recommended.shape[1]} columns, fewer than k={k}")
    if recommended.size and recommended.max() >= n_items:
        raise MetricsError(f"recommended holds item ids >= n_items={n_items}")
    te_ptr = test.indptr.astype(np.int64)
    te_idx = test.indices.astype(np.int32)
    users = np.flatnonzero(np.diff(te_ptr) > 0).astype(np.int64)
    if users.size == 0:
        raise MetricsError("test has no interactions, so no user can be evaluated")
    lists = np.ascontiguousarray(recommended[users, :k], dtype=np.int32)
    with numba_threads(threads):
        return _topk_report(lists, users, te_ptr, te_idx, k, n_items)
