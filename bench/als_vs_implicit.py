"""Our numba ALS against implicit 0.7.3's CPU ALS (conjugate gradient), side by side in one run.

Both fit the same BM25-weighted user x artist matrix (BM25 K1=100, B=0.8 on the artist x user
orientation, as in implicit's lastfm example, via ``recsys_assets.core.weighting.bm25_weight``) with
the same factors, regularization, iterations, CG steps, initial factors and thread count; BLAS is
pinned to one thread for both. Iterations alternate between the two libraries so both see the same
load on a shared machine. Prints seconds per iteration (median of iterations after the first,
and mean), the final training loss of both models computed the same way (our ``als_loss`` on each
model's factors, plus implicit's own ``calculate_loss``), and ratios (ours / implicit).

    .venv/bin/python bench/als_vs_implicit.py --dataset hetrec
    .venv/bin/python bench/als_vs_implicit.py --dataset synthetic --users 50000 --artists 40000 --plays 2000000
    .venv/bin/python bench/als_vs_implicit.py --dataset synthetic            # full size, takes minutes
    .venv/bin/python bench/als_vs_implicit.py --dataset hetrec --quality     # p@10 on an 80/20 split

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from implicit.cpu.als import AlternatingLeastSquares  # noqa: E402
from implicit.cpu.als import calculate_loss as implicit_calculate_loss  # noqa: E402
from implicit.evaluation import ranking_metrics_at_k, train_test_split  # noqa: E402

from recsys_assets.core.als import als_loss, fit_als  # noqa: E402
from recsys_assets.core.weighting import bm25_weight  # noqa: E402

# The shared data folder sits next to the repository (as tests/conftest.py finds it).
HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k" / "user_artists.dat"
SPLIT_SEED = 42


def load_hetrec(path: Path) -> sp.csr_matrix:
    """HetRec Last.fm-2k ``user_artists.dat`` as a users x artists play-count CSR (dense ids)."""
    table = np.loadtxt(path, delimiter="\t", skiprows=1, dtype=np.int64, encoding="latin-1")
    _, users = np.unique(table[:, 0], return_inverse=True)
    _, artists = np.unique(table[:, 1], return_inverse=True)
    return sp.csr_matrix(
        (table[:, 2].astype(np.float32), (users, artists)), shape=(users.max() + 1, artists.max() + 1)
    )


def load_synthetic(n_users: int, n_artists: int, n_plays: int) -> sp.csr_matrix:
    """Synthetic Last.fm-shaped plays with about ``n_plays`` stored pairs."""
    from recsys_assets.core.synthetic import generate_plays

    return generate_plays(n_users, n_artists, artists_per_user=n_plays / n_users, seed=0).to_csr()


def bm25_user_items(plays: sp.csr_matrix) -> sp.csr_matrix:
    """BM25 (K1=100, B=0.8) computed with artists as documents, returned as users x artists."""
    return bm25_weight(plays.T.tocsr(), k1=100.0, b=0.8).T.tocsr().astype(np.float32)


class OursRunner:
    """Our ALS advanced one iteration per call (warm start: identical to one long fit)."""

    def __init__(self, weighted, args, users0, items0):
        self.weighted, self.args = weighted, args
        self.users, self.items = users0.copy(), items0.copy()

    def step(self) -> float:
        result = fit_als(
            self.weighted,
            factors=self.args.factors,
            regularization=self.args.regularization,
            iterations=1,
            cg_steps=self.args.cg_steps,
            threads=self.args.threads,
            user_factors=self.users,
            item_factors=self.items,
            compute_loss=False,
        )
        self.users, self.items = result.user_factors, result.item_factors
        return result.seconds[0]


class ImplicitRunner:
    """implicit's CPU ALS advanced one iteration per call (fit() keeps factors that are already set)."""

    def __init__(self, weighted, args, users0, items0):
        self.weighted = weighted
        self.model = AlternatingLeastSquares(
            factors=args.factors,
            regularization=args.regularization,
            iterations=1,
            num_threads=args.threads,
            random_state=0,
        )
        self.model.cg_steps = args.cg_steps
        self.model.user_factors = users0.copy()
        self.model.item_factors = items0.copy()

    def step(self) -> float:
        seconds: list[float] = []
        # implicit's callback gets (iteration, elapsed seconds of the iteration, loss).
        self.model.fit(
            self.weighted, show_progress=False, callback=lambda _i, elapsed, _l: seconds.append(elapsed)
        )
        return seconds[0]


def per_iteration(seconds: list[float]) -> tuple[float, float]:
    """(median of iterations after the first, mean of all)."""
    tail = seconds[1:] or seconds
    return statistics.median(tail), statistics.fmean(seconds)


def precision_at_10(train, test, user_factors, item_factors, threads: int) -> float:
    """implicit's precision@10 (its ``ranking_metrics_at_k``) for the given factors."""
    model = AlternatingLeastSquares(factors=user_factors.shape[1], num_threads=threads)
    model.user_factors = user_factors
    model.item_factors = item_factors
    return float(ranking_metrics_at_k(model, train, test, K=10, show_progress=False)["precision"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=["hetrec", "synthetic"], default="hetrec")
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--plays", type=int, default=17_500_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--regularization", type=float, default=0.01)
    parser.add_argument("--iterations", type=int, default=15)
    parser.add_argument("--cg-steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quality", action="store_true", help="80/20 split, report p@10 of both")
    args = parser.parse_args()
    if args.quality and args.dataset != "hetrec":
        parser.error("--quality runs on --dataset hetrec")

    start = time.perf_counter()
    if args.dataset == "hetrec":
        if not HETREC.exists():
            parser.error(f"{HETREC} not found")
        plays = load_hetrec(HETREC)
    else:
        plays = load_synthetic(args.users, args.artists, args.plays)
    print(
        f"data: {plays.shape[0]} users x {plays.shape[1]} artists, {plays.nnz} plays "
        f"({time.perf_counter() - start:.1f} s to load)"
    )

    test = None
    if args.quality:
        train, test = train_test_split(plays, train_percentage=0.8, random_state=SPLIT_SEED)
        train, test = train.tocsr(), test.tocsr()
        print(
            f"split: implicit train_test_split 80/20, random_state={SPLIT_SEED}: "
            f"{train.nnz} train, {test.nnz} test pairs"
        )
    else:
        train = plays
    weighted = bm25_user_items(train)

    rng = np.random.default_rng(0)
    users0 = rng.random((weighted.shape[0], args.factors), dtype=np.float32) * np.float32(0.01)
    items0 = rng.random((weighted.shape[1], args.factors), dtype=np.float32) * np.float32(0.01)

    with threadpool_limits(limits=1, user_api="blas"):
        # Warm numba's compile cache on a tiny problem so compilation is not timed.
        fit_als(weighted[:50], factors=args.factors, iterations=1, threads=args.threads, compute_loss=False)
        # Alternate the two libraries iteration by iteration: the machine is shared and its load
        # drifts, so side-by-side iterations see the same conditions.
        ours, theirs = (
            OursRunner(weighted, args, users0, items0),
            ImplicitRunner(weighted, args, users0, items0),
        )
        ours_seconds, imp_seconds = [], []
        for _ in range(args.iterations):
            ours_seconds.append(ours.step())
            imp_seconds.append(theirs.step())
        ours_users, ours_items = ours.users, ours.items
        imp_users, imp_items = theirs.model.user_factors, theirs.model.item_factors
        ours_loss = als_loss(weighted, ours_users, ours_items, args.regularization, threads=args.threads)
        imp_loss = als_loss(weighted, imp_users, imp_items, args.regularization, threads=args.threads)
        imp_own_loss = float(
            implicit_calculate_loss(
                weighted, imp_users, imp_items, args.regularization, num_threads=args.threads
            )
        )

    ours_median, ours_mean = per_iteration(ours_seconds)
    imp_median, imp_mean = per_iteration(imp_seconds)
    load = os.getloadavg()
    print(
        f"threads {args.threads}, factors {args.factors}, iterations {args.iterations}, "
        f"cg_steps {args.cg_steps}, regularization {args.regularization}; load average {load[0]:.2f}"
    )
    print(f"{'':10s} {'s/iter median':>14s} {'s/iter mean':>12s} {'final loss':>14s}")
    print(f"{'ours':10s} {ours_median:14.3f} {ours_mean:12.3f} {ours_loss:14.8f}")
    print(
        f"{'implicit':10s} {imp_median:14.3f} {imp_mean:12.3f} {imp_loss:14.8f}  (its own: {imp_own_loss:.8f})"
    )
    print(f"ratio ours/implicit: time {ours_median / imp_median:.3f}, loss {ours_loss / imp_loss:.6f}")

    report = {
        "dataset": args.dataset,
        "users": int(weighted.shape[0]),
        "artists": int(weighted.shape[1]),
        "nnz": int(weighted.nnz),
        "factors": args.factors,
        "iterations": args.iterations,
        "cg_steps": args.cg_steps,
        "regularization": args.regularization,
        "threads": args.threads,
        "weighting": "recsys bm25_weight K1=100 B=0.8, artist x user orientation",
        "ours_s_per_iter": round(ours_median, 4),
        "ours_s_per_iter_mean": round(ours_mean, 4),
        "implicit_s_per_iter": round(imp_median, 4),
        "implicit_s_per_iter_mean": round(imp_mean, 4),
        "time_ratio": round(ours_median / imp_median, 4),
        "ours_loss": ours_loss,
        "implicit_loss": imp_loss,
        "implicit_own_loss": imp_own_loss,
        "loss_ratio": ours_loss / imp_loss,
        "load_average_1min": round(load[0], 2),
        # Same seed, threads and machine give the same bytes (recsys_assets/core/als.py): compare runs.
        "ours_factors_sha256": hashlib.sha256(ours_users.tobytes() + ours_items.tobytes()).hexdigest(),
    }
    if test is not None:
        report["ours_p_at_10"] = precision_at_10(train, test, ours_users, ours_items, args.threads)
        report["implicit_p_at_10"] = precision_at_10(train, test, imp_users, imp_items, args.threads)
        print(
            f"precision@10 (implicit's ranking_metrics_at_k): ours {report['ours_p_at_10']:.4f}, "
            f"implicit {report['implicit_p_at_10']:.4f}"
        )
    print(json.dumps(report))


if __name__ == "__main__":
    main()
