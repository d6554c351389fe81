import math

import numpy as np
import pytest
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from recsys_assets.core.metrics import (
    MetricsError,
    RankingReport,
    evaluate_factors,
    evaluate_popularity,
    evaluate_ranked_lists,
    evaluate_scores,
    expected_random,
    popularity_scores,
    random_scores,
)
from recsys_assets.core.split import per_user_holdout, random_split
from recsys_assets.core.topk import tile_shape


def _plays(n_users=40, n_items=60, density=0.25, seed=0):
    X = sp.random(n_users, n_items, density=density, random_state=seed, format="csr", dtype=np.float32)
    X.data = np.ceil(X.data * 20)
    return X


def _reference(S, train, test, k):
    """Slow, literal implementation of every metric in the metrics module docstring."""
    S = np.asarray(S, dtype=np.float64)
    n_users, n_items = S.shape
    train, test = train.tocsr(), test.tocsr()
    hits_sum = denom = 0.0
    recall, ap, ndcg, auc, covered = [], [], [], [], set()
    rank_w, weights, ranks = 0.0, 0.0, []
    for u in range(n_users):
        pos = set(test.indices[test.indptr[u] : test.indptr[u + 1]].tolist())
        if not pos:
            continue
        seen = set(train.indices[train.indptr[u] : train.indptr[u + 1]].tolist())
        cand = [i for i in range(n_items) if i not in seen]
        order = sorted(cand, key=lambda i: (-S[u, i], i))[:k]
        covered.update(order)
        hit_flags = [i in pos for i in order]
        h = sum(hit_flags)
        hits_sum += h
        denom += min(k, len(pos))
        recall.append(h / len(pos))
        run, a = 0, 0.0
        for j, f in enumerate(hit_flags):
            if f:
                run += 1
                a += run / (j + 1)
        ap.append(a / min(k, len(pos)))
        dcg = sum(1 / math.log2(j + 2) for j, f in enumerate(hit_flags) if f)
        ndcg.append(dcg / sum(1 / math.log2(j + 2) for j in range(min(k, len(pos)))))
        neg = [j for j in cand if j not in pos]
        if neg:
            wins = sum((S[u, i] > S[u, j]) + 0.5 * (S[u, i] == S[u, j]) for i in pos for j in neg)
            auc.append(wins / (len(pos) * len(neg)))
        for i in pos:
            if len(cand) > 1:
                above = sum((S[u, j] > S[u, i]) + 0.5 * (S[u, j] == S[u, i]) for j in cand if j != i)
                r = above / (len(cand) - 1)
                w = test[u, i]
                rank_w += w * r
                weights += w
                ranks.append(r)
    return {
        "precision": hits_sum / denom,
        "recall": np.mean(recall),
        "map": np.mean(ap),
        "ndcg": np.mean(ndcg),
        "auc": np.mean(auc),
        "mpr": rank_w / weights,
        "mpr_unweighted": np.mean(ranks),
        "coverage": len(covered) / n_items,
        "n_users": len(recall),
    }


def _assert_matches(report: RankingReport, ref: dict, rtol=1e-9):
    got = report.as_dict()
    for name, value in ref.items():
        assert got[name] == pytest.approx(value, rel=rtol, abs=1e-12), name


def test_factors_match_reference_across_tilings():
    X = _plays()
    split = per_user_holdout(X, 0.3, min_items=3, seed=1)
    rng = np.random.default_rng(2)
    U = rng.standard_normal((40, 6)).astype(np.float32)
    V = rng.standard_normal((60, 6)).astype(np.float32)
    ref = _reference(U @ V.T, split.train, split.test, k=5)
    # Tiles that cut users and items mid-way, one tile, and a single thread must all agree.
    for block, item_block, threads in [(3, 7, 2), (64, 4096, 1), (1, 1, None)]:
        report = evaluate_factors(
            U, V, split.train, split.test, k=5, threads=threads, block_size=block, item_block_size=item_block
        )
        _assert_matches(report, ref)


def test_scores_with_ties_match_reference():
    X = _plays(seed=3)
    split = per_user_holdout(X, 0.25, min_items=2, seed=4)
    # Scores from {0, 1, 2}: most comparisons are ties, which exercises the half-credit rule and
    # the lower-index tie-break of the top-k lists.
    S = np.random.default_rng(5).integers(0, 3, size=X.shape).astype(np.float32)
    report = evaluate_scores(lambda users: S[users], split.train, split.test, k=4, block_size=7)
    _assert_matches(report, _reference(S, split.train, split.test, k=4))


def test_popularity_is_the_same_through_factors_and_scores():
    split = per_user_holdout(_plays(seed=6), 0.2, seed=7)
    pop = popularity_scores(split.train)
    np.testing.assert_array_equal(pop, np.diff(split.train.tocsc().indptr))
    n_users = split.train.shape[0]
    via_factors = evaluate_factors(np.ones((n_users, 1)), pop[:, None], split.train, split.test, k=5)
    via_scores = evaluate_scores(
        lambda u: np.broadcast_to(pop, (u.size, pop.size)), split.train, split.test, k=5
    )
    assert via_factors == via_scores
    _assert_matches(via_factors, _reference(np.tile(pop, (n_users, 1)), split.train, split.test, k=5))


def test_random_baseline_is_near_half_and_reproducible():
    X = _plays(n_users=300, n_items=2000, density=0.02, seed=8)
    split = per_user_holdout(X, 0.3, seed=9)
    a = evaluate_scores(random_scores(2000, seed=1), split.train, split.test, k=10, block_size=64)
    b = evaluate_scores(random_scores(2000, seed=1), split.train, split.test, k=10, block_size=17, threads=1)
    assert a == b
    # ~3600 test pairs, each rank ~ U(0, 1): standard error ~0.005.
    assert a.mpr == pytest.approx(0.5, abs=0.03)
    assert a.mpr_unweighted == pytest.approx(0.5, abs=0.03)
    assert a.auc == pytest.approx(0.5, abs=0.03)
    c = evaluate_scores(random_scores(2000, seed=2), split.train, split.test, k=10)
    assert c != a


def test_perfect_and_reversed_scores_hit_the_bounds():
    split = per_user_holdout(_plays(seed=10), 0.2, seed=11)
    test = split.test.tocsr()
    # Test items on top with distinct scores (by item id), everything else 0.
    perfect = np.zeros(test.shape, np.float32)
    perfect[test.nonzero()] = 1.0 + test.nonzero()[1]
    report = evaluate_scores(lambda u: perfect[u], split.train, split.test, k=20)
    assert report.auc == 1.0
    assert report.precision == 1.0
    assert report.ndcg == pytest.approx(1.0)
    assert report.map == pytest.approx(1.0)
    # Other test items are candidates too, so a user's P test items fill positions 0..P-1 and the
    # unweighted MPR is the mean of (P - 1) / 2 / (N_u - 1) over test pairs: 0 only when P = 1.
    n_pos = np.diff(test.indptr)
    n_cand = test.shape[1] - np.diff(split.train.tocsr().indptr)
    users = n_pos > 0
    expected = np.sum(n_pos[users] * (n_pos[users] - 1) / 2 / (n_cand[users] - 1)) / n_pos.sum()
    assert report.mpr_unweighted == pytest.approx(expected, rel=1e-12)
    worst = evaluate_scores(lambda u: -perfect[u], split.train, split.test, k=20)
    assert worst.auc == 0.0
    assert worst.precision == 0.0
    assert worst.mpr_unweighted == pytest.approx(1.0 - expected, rel=1e-12)
    single = per_user_holdout(_plays(seed=10), 0.01, seed=11)  # exactly one test item per user
    one = (single.test.toarray() > 0).astype(np.float32)
    assert evaluate_scores(lambda u: one[u], single.train, single.test).mpr == 0.0


def test_ranked_lists_match_reference_and_accept_padding():
    split = per_user_holdout(_plays(seed=12), 0.3, seed=13)
    rng = np.random.default_rng(14)
    S = rng.random(split.test.shape)
    lists = np.argsort(-S, axis=1)[:, :6].astype(np.int64)
    lists[::5, 4:] = -1  # padded rows: "no item" counts as a miss
    report = evaluate_ranked_lists(lists, split.test, k=6)
    test = split.test.tocsr()
    hits = denom = 0.0
    aps, ndcgs, aucs, rec = [], [], [], []
    n_items = test.shape[1]
    for u in range(test.shape[0]):
        pos = set(test.indices[test.indptr[u] : test.indptr[u + 1]].tolist())
        if not pos:
            continue
        flags = [int(i) in pos for i in lists[u]]
        hits += sum(flags)
        denom += min(6, len(pos))
        rec.append(sum(flags) / len(pos))
        run, ap, auc, miss = 0, 0.0, 0.0, 0
        for j, f in enumerate(flags):
            if f:
                run += 1
                ap += run / (j + 1)
            else:
                miss += 1
                auc += run
        auc += (run + len(pos)) / 2 * (n_items - len(pos) - miss)
        aucs.append(auc / (len(pos) * (n_items - len(pos))))
        aps.append(ap / min(6, len(pos)))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(6, len(pos))))
        ndcgs.append(sum(1 / math.log2(j + 2) for j, f in enumerate(flags) if f) / idcg)
    assert report.precision == pytest.approx(hits / denom)
    assert report.recall == pytest.approx(np.mean(rec))
    assert report.map == pytest.approx(np.mean(aps))
    assert report.ndcg == pytest.approx(np.mean(ndcgs))
    assert report.auc_at_k == pytest.approx(np.mean(aucs))
    users = np.flatnonzero(np.diff(test.indptr))
    shown = lists[users]
    assert report.coverage == pytest.approx(np.unique(shown[shown >= 0]).size / n_items)


def _implicit_model(U, V):
    from implicit.cpu.als import AlternatingLeastSquares

    with threadpool_limits(1, "blas"):  # implicit warns when BLAS may use several threads
        model = AlternatingLeastSquares(factors=U.shape[1], num_threads=1, random_state=0)
    model.user_factors = U
    model.item_factors = V
    return model


def test_agrees_with_implicit_ranking_metrics():
    evaluation = pytest.importorskip("implicit.evaluation")
    X = _plays(n_users=120, n_items=200, density=0.08, seed=15).astype(np.float32)
    split = random_split(X, 0.25, seed=16)
    rng = np.random.default_rng(17)
    U = rng.standard_normal((120, 8)).astype(np.float32)
    V = rng.standard_normal((200, 8)).astype(np.float32)
    model = _implicit_model(U, V)
    theirs = evaluation.ranking_metrics_at_k(model, split.train, split.test, K=10, show_progress=False)
    ours = evaluate_factors(U, V, split.train, split.test, k=10)
    # Same definitions: precision (min(k, P) denominator), MAP, NDCG. implicit's "auc" is a top-k
    # estimate, not the full AUC, so it is compared through evaluate_ranked_lists below.
    assert ours.precision == pytest.approx(theirs["precision"], rel=1e-9)
    assert ours.map == pytest.approx(theirs["map"], rel=1e-9)
    assert ours.ndcg == pytest.approx(theirs["ndcg"], rel=1e-9)
    ids, _ = model.recommend(np.arange(120), split.train, N=10)
    lists = evaluate_ranked_lists(ids, split.test, k=10)
    for name in ("precision", "map", "ndcg"):
        assert getattr(lists, name) == pytest.approx(theirs[name], rel=1e-9), name
    assert lists.auc_at_k == pytest.approx(theirs["auc"], rel=1e-9)
    assert ours.auc != pytest.approx(theirs["auc"], abs=1e-6)


def test_rejects_bad_inputs():
    split = per_user_holdout(_plays(), 0.2, seed=0)
    U = np.zeros((40, 3), np.float32)
    V = np.zeros((60, 3), np.float32)
    with pytest.raises(MetricsError, match="share"):
        evaluate_factors(U, V, split.train + split.test, split.test)
    with pytest.raises(MetricsError, match="shape"):
        evaluate_factors(U, V, split.train[:30], split.test)
    with pytest.raises(MetricsError, match="rows"):
        evaluate_factors(U[:10], V, split.train, split.test)
    with pytest.raises(MetricsError, match="columns"):
        evaluate_factors(U, V[:, :2], split.train, split.test)
    with pytest.raises(MetricsError, match="k must"):
        evaluate_factors(U, V, split.train, split.test, k=0)
    bad = V.copy()
    bad[0, 0] = np.nan
    with pytest.raises(MetricsError, match="NaN"):
        evaluate_factors(U, bad, split.train, split.test)
    with pytest.raises(TypeError, match="sparse"):
        evaluate_factors(U, V, split.train.toarray(), split.test)
    with pytest.raises(MetricsError, match="shape"):
        evaluate_scores(lambda u: np.zeros((u.size, 5)), split.train, split.test)
    with pytest.raises(MetricsError, match="no interactions"):
        evaluate_factors(U, V, split.train, sp.csr_matrix(split.test.shape))
    with pytest.raises(MetricsError, match="columns"):
        evaluate_ranked_lists(np.zeros((40, 3), np.int64), split.test, k=5)


def test_factors_with_ties_across_chunks_match_reference():
    # More items than one counting chunk (512) and tiles that cut users and items mid-way; small integer
    # factors make many exact score ties between test items and candidates, and inside the top-k.
    X = _plays(n_users=30, n_items=1500, density=0.02, seed=18)
    split = per_user_holdout(X, 0.3, min_items=3, seed=19)
    rng = np.random.default_rng(20)
    U = rng.integers(-2, 3, size=(30, 3)).astype(np.float32)
    V = rng.integers(-2, 3, size=(1500, 3)).astype(np.float32)
    ref = _reference(U @ V.T, split.train, split.test, k=7)
    for block, item_block in [(7, 700), (256, 1024), (1, 1500)]:
        report = evaluate_factors(
            U, V, split.train, split.test, k=7, threads=2, block_size=block, item_block_size=item_block
        )
        _assert_matches(report, ref)


def test_tiles_follow_the_memory_budget():
    X = _plays(n_users=30, n_items=1500, density=0.02, seed=18)
    split = per_user_holdout(X, 0.3, min_items=3, seed=19)
    rng = np.random.default_rng(21)
    U = rng.standard_normal((30, 4)).astype(np.float32)
    V = rng.standard_normal((1500, 4)).astype(np.float32)
    roomy = evaluate_factors(U, V, split.train, split.test, k=5, threads=1)
    # 4 KiB: half of it holds one 512-float tile, far below the 256 x 1024 default; same report.
    tight = evaluate_factors(U, V, split.train, split.test, k=5, threads=1, memory_budget_bytes=4096)
    assert tight == roomy
    assert tile_shape(30, 1500, 1, memory_budget_bytes=4096) == (1, 512)
    assert tile_shape(30, 1500, 2) == (30, 1024)
    with pytest.raises(MetricsError, match="memory_budget_bytes"):
        evaluate_factors(U, V, split.train, split.test, memory_budget_bytes=0)


@pytest.mark.parametrize(("n_items", "k", "seed"), [(60, 5, 22), (400, 10, 23), (25, 30, 24)])
def test_popularity_fast_path_equals_the_general_path(n_items, k, seed):
    X = _plays(n_users=50, n_items=n_items, density=0.2, seed=seed)
    split = per_user_holdout(X, 0.3, min_items=2, seed=seed)
    n_users = split.train.shape[0]
    pop = popularity_scores(split.train)
    assert np.unique(pop).size < pop.size  # tied popularity counts occur
    general = evaluate_factors(
        np.ones((n_users, 1)), pop[:, None], split.train, split.test, k=min(k, n_items)
    )
    fast = evaluate_popularity(split.train, split.test, k=min(k, n_items), threads=2)
    assert fast == general  # every field bit for bit, not approximately


def test_random_expectation_matches_monte_carlo_of_random_scores():
    X = _plays(n_users=60, n_items=80, density=0.15, seed=25)
    split = per_user_holdout(X, 0.3, min_items=2, seed=26)
    expected = expected_random(split.train, split.test, k=5).as_dict()
    runs = [
        evaluate_scores(random_scores(80, seed=s), split.train, split.test, k=5).as_dict() for s in range(40)
    ]
    for name in ("precision", "recall", "map", "ndcg", "auc", "mpr", "mpr_unweighted", "coverage"):
        values = np.array([r[name] for r in runs])
        # The sample mean of 40 independent runs is within 4.5 standard errors of the expectation
        # (false alarm ~1e-5 per metric); the floor covers metrics that barely vary between runs.
        tolerance = 4.5 * values.std(ddof=1) / np.sqrt(values.size) + 1e-9
        assert abs(values.mean() - expected[name]) <= tolerance, name
    assert expected["auc"] == expected["mpr"] == expected["mpr_unweighted"] == 0.5
    assert expected["n_users"] == runs[0]["n_users"]


def test_random_expectation_by_hand():
    # One user, 4 items: item 0 in train, items 1 and 2 in test; k = 2. N = 3 candidates, P = 2, L = 2.
    train = sp.csr_matrix(np.array([[1.0, 0, 0, 0]]))
    test = sp.csr_matrix(np.array([[0, 1.0, 1.0, 0]]))
    r = expected_random(train, test, k=2)
    assert r.precision == pytest.approx(2 * 2 / 3 / 2)
    assert r.recall == pytest.approx(2 / 3)
    # AP: i=0: (2/3) * 1 / 1; i=1: (2/3) * (1 + 1 * 1/2) / 2 -> (2/3 + 1/2) / min(2, 2)
    assert r.map == pytest.approx((2 / 3 + 0.5) / 2)
    idcg = 1 + 1 / math.log2(3)
    assert r.ndcg == pytest.approx((2 / 3) * idcg / idcg)
    # Each of the 3 candidates is listed with probability 2/3; item 0 (train) never.
    assert r.coverage == pytest.approx(3 * (2 / 3) / 4)
