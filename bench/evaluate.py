"""Time full-ranking evaluation (top-k metrics + AUC + MPR over every non-train item) at Last.fm scale.

Train/test come from the synthetic Last.fm-shaped generator with a 20 % per-user holdout; the factors
are random (timing does not depend on their quality, except that random factors defeat the early-exit
pre-filters, so this is the slow case). A GEMM-only run over a sample of users, with the same threads,
estimates how much of the time is the unavoidable score computation.

    .venv/bin/python bench/evaluate.py                       # full size: 360K users x 300K artists
    .venv/bin/python bench/evaluate.py --users 20000 --artists 50000
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from recsys_assets.core.metrics import evaluate_factors
from recsys_assets.core.split import per_user_holdout
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.threads import blas_threads, resolve_threads


def gemm_seconds(user_factors: np.ndarray, item_factors: np.ndarray, n_users: int, threads: int) -> float:
    """Seconds to compute ``n_users`` score rows by BLAS alone, extrapolated from the given sample."""
    block = 512
    out = np.empty((block, item_factors.shape[0]), dtype=np.float32)
    with blas_threads(threads):
        np.matmul(user_factors[:block], item_factors.T, out=out)  # warm the BLAS threads
        start = time.perf_counter()
        for b0 in range(0, user_factors.shape[0] - block + 1, block):
            np.matmul(user_factors[b0 : b0 + block], item_factors.T, out=out)
        elapsed = time.perf_counter() - start
    sampled = (user_factors.shape[0] // block) * block
    return elapsed * n_users / sampled


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--artists-per-user", type=float, default=50.0)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--item-block-size", type=int, default=2048)
    parser.add_argument(
        "--gemm-sample", type=int, default=8192, help="users timed for the GEMM-only estimate"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threads = resolve_threads(args.threads)

    start = time.perf_counter()
    plays = generate_plays(args.users, args.artists, artists_per_user=args.artists_per_user, seed=args.seed)
    X = plays.to_csr()
    split = per_user_holdout(X, test_fraction=args.test_fraction, seed=args.seed)
    print(
        f"data: {X.shape[0]} users x {X.shape[1]} artists, {X.nnz} plays "
        f"(train {split.train.nnz}, test {split.test.nnz}) in {time.perf_counter() - start:.1f} s"
    )

    rng = np.random.default_rng(args.seed)
    scale = np.float32(1.0 / np.sqrt(args.factors))
    user_factors = rng.standard_normal((X.shape[0], args.factors), dtype=np.float32) * scale
    item_factors = rng.standard_normal((X.shape[1], args.factors), dtype=np.float32) * scale

    # Compile (or load from cache) the kernels outside the timed region.
    small = slice(0, 64)
    evaluate_factors(
        user_factors[small], item_factors, split.train[small], split.test[small], k=args.k, threads=threads
    )

    start = time.perf_counter()
    report = evaluate_factors(
        user_factors,
        item_factors,
        split.train,
        split.test,
        k=args.k,
        threads=threads,
        block_size=args.block_size,
        item_block_size=args.item_block_size,
    )
    seconds = time.perf_counter() - start
    gemm = gemm_seconds(user_factors[: args.gemm_sample], item_factors, report.n_users, threads)

    print(
        f"evaluate_factors: {report.n_users} users in {seconds:.1f} s ({report.n_users / seconds:.0f} users/s)"
    )
    print(f"  GEMM alone (numpy, {threads} BLAS threads, extrapolated): {gemm:.1f} s = {gemm / seconds:.0%}")
    print("  " + ", ".join(f"{name}={value:.4f}" for name, value in report.as_dict().items()))
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "n_users": report.n_users,
                "n_items": int(X.shape[1]),
                "factors": args.factors,
                "users_per_s": round(report.n_users / seconds, 1),
                "threads": threads,
                "train_nnz": int(split.train.nnz),
                "test_nnz": int(split.test.nnz),
                "gemm_seconds_est": round(gemm, 2),
                "block_size": args.block_size,
                "item_block_size": args.item_block_size,
                "mpr": round(report.mpr, 4),
                "auc": round(report.auc, 4),
            }
        )
    )


if __name__ == "__main__":
    main()
