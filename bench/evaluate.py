"""Time full-ranking evaluation and all-user recommendations at Last.fm scale against the GEMM floor.

Both need every score of the (users x artists) product; ``gemm_s`` is that float32 GEMM alone (numpy,
the same BLAS threads, blocks of 512 users x every artist), timed on a sample of users and extrapolated.
``ratio_to_gemm`` = measured seconds / ``gemm_s``.

* ``--mode evaluate`` (default): ``evaluate_factors`` (top-k metrics + full AUC + MPR over every
  non-train artist) for every user with a test item, 20 % per-user holdout, one factor size.
* ``--mode recommend``: ``topk_dot`` top-``n`` for every user with the played artists excluded, once
  per model size in ``--models`` (the product's defaults: ALS 32 factors, LSA 64 factors).

Train/test come from the synthetic Last.fm-shaped generator. Factors are random normal: timing does not
depend on their quality, except that random factors defeat early exits, so this is the slow case.

    .venv/bin/python bench/evaluate.py                            # evaluate, 360K users x 300K artists
    .venv/bin/python bench/evaluate.py --factors 32
    .venv/bin/python bench/evaluate.py --mode recommend           # ALS 32 + LSA 64 factors
    .venv/bin/python bench/evaluate.py --users 20000 --artists 50000

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.metrics import evaluate_factors  # noqa: E402
from recsys_assets.core.split import per_user_holdout  # noqa: E402
from recsys_assets.core.synthetic import generate_plays  # noqa: E402
from recsys_assets.core.threads import blas_threads, resolve_threads  # noqa: E402
from recsys_assets.core.topk import topk_dot  # noqa: E402


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


def random_factors(rng: np.random.Generator, rows: int, factors: int) -> np.ndarray:
    """(rows, factors) float32 standard normal / sqrt(factors), so scores have unit variance."""
    return rng.standard_normal((rows, factors), dtype=np.float32) * np.float32(1.0 / np.sqrt(factors))


def run_evaluate(args: argparse.Namespace, split, threads: int) -> dict:
    n_users, n_items = split.train.shape
    rng = np.random.default_rng(args.seed)
    user_factors = random_factors(rng, n_users, args.factors)
    item_factors = random_factors(rng, n_items, args.factors)
    tiles = {}
    if args.block_size:
        tiles["block_size"] = args.block_size
    if args.item_block_size:
        tiles["item_block_size"] = args.item_block_size
    # Compile (or load from cache) the kernels outside the timed region.
    small = slice(0, 64)
    evaluate_factors(
        user_factors[small], item_factors, split.train[small], split.test[small], k=args.k, threads=threads
    )
    start = time.perf_counter()
    report = evaluate_factors(
        user_factors, item_factors, split.train, split.test, k=args.k, threads=threads, **tiles
    )
    seconds = time.perf_counter() - start
    gemm = gemm_seconds(user_factors[: args.gemm_sample], item_factors, report.n_users, threads)
    print(
        f"evaluate_factors, {args.factors} factors: {report.n_users} users in {seconds:.1f} s "
        f"({report.n_users / seconds:.0f} users/s)"
    )
    print(
        f"  GEMM alone (numpy, {threads} BLAS threads, extrapolated): {gemm:.1f} s; ratio {seconds / gemm:.3f}"
    )
    print("  " + ", ".join(f"{name}={value:.6f}" for name, value in report.as_dict().items()))
    return {
        "mode": "evaluate",
        "seconds": round(seconds, 2),
        "gemm_s": round(gemm, 2),
        "ratio_to_gemm": round(seconds / gemm, 3),
        "n_users": report.n_users,
        "n_items": int(n_items),
        "factors": args.factors,
        "users_per_s": round(report.n_users / seconds, 1),
        "threads": threads,
        "train_nnz": int(split.train.nnz),
        "test_nnz": int(split.test.nnz),
        "metrics": {name: float(value) for name, value in report.as_dict().items()},
    }


def run_recommend(args: argparse.Namespace, plays, threads: int) -> dict:
    n_users, n_items = plays.shape
    rng = np.random.default_rng(args.seed)
    models = {}
    for spec in args.models.split(","):
        name, factors = spec.split(":")
        user_factors = random_factors(rng, n_users, int(factors))
        item_factors = random_factors(rng, n_items, int(factors))
        topk_dot(user_factors[:64], item_factors, args.n, exclude=plays[:64], threads=threads)  # compile
        start = time.perf_counter()
        ids, _ = topk_dot(user_factors, item_factors, args.n, exclude=plays, threads=threads)
        seconds = time.perf_counter() - start
        gemm = gemm_seconds(user_factors[: args.gemm_sample], item_factors, n_users, threads)
        print(
            f"topk_dot {name} ({factors} factors): {n_users} users x top-{args.n} in {seconds:.1f} s; "
            f"GEMM alone {gemm:.1f} s; ratio {seconds / gemm:.3f}"
        )
        models[name] = {
            "factors": int(factors),
            "topk_s": round(seconds, 2),
            "gemm_s": round(gemm, 2),
            "ratio_to_gemm": round(seconds / gemm, 3),
            "checksum": int(ids.astype(np.int64).sum() % 1_000_000_007),
        }
    topk = sum(m["topk_s"] for m in models.values())
    gemm = sum(m["gemm_s"] for m in models.values())
    return {
        "mode": "recommend",
        "n": args.n,
        "n_users": int(n_users),
        "n_items": int(n_items),
        "threads": threads,
        "topk_s": round(topk, 2),
        "gemm_s": round(gemm, 2),
        "ratio_to_gemm": round(topk / gemm, 3),
        "models": models,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--mode", choices=("evaluate", "recommend"), default="evaluate")
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--artists-per-user", type=float, default=50.0)
    parser.add_argument("--factors", type=int, default=64, help="evaluate mode: factors of the model")
    parser.add_argument(
        "--models", default="als:32,lsa:64", help="recommend mode: name:factors,... (default: the product's)"
    )
    parser.add_argument("--k", type=int, default=10, help="evaluate mode: cutoff of the top-k metrics")
    parser.add_argument("--n", type=int, default=20, help="recommend mode: recommendations per user")
    parser.add_argument("--test-fraction", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--block-size", type=int, default=None, help="evaluate mode: users per score tile")
    parser.add_argument("--item-block-size", type=int, default=None, help="evaluate mode: items per tile")
    parser.add_argument(
        "--gemm-sample", type=int, default=8192, help="users timed for the GEMM-only estimate"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    threads = resolve_threads(args.threads)

    start = time.perf_counter()
    plays = generate_plays(args.users, args.artists, artists_per_user=args.artists_per_user, seed=args.seed)
    X = plays.to_csr()
    del plays
    if args.mode == "recommend":
        print(
            f"data: {X.shape[0]} users x {X.shape[1]} artists, {X.nnz} plays in {time.perf_counter() - start:.1f} s"
        )
        summary = run_recommend(args, X, threads)
    else:
        split = per_user_holdout(X, test_fraction=args.test_fraction, seed=args.seed)
        del X
        print(
            f"data: {split.train.shape[0]} users x {split.train.shape[1]} artists "
            f"(train {split.train.nnz}, test {split.test.nnz}) in {time.perf_counter() - start:.1f} s"
        )
        summary = run_evaluate(args, split, threads)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
