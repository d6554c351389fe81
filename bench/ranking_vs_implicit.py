"""Our numba BPR and logistic MF against implicit 0.7.3's CPU BPR / LMF, side by side in one run.

Speed: seconds per epoch at the same thread count (BLAS pinned to one thread), the same number of
factors (implicit's defaults: BPR 100, LMF 30) and each library's default learning settings. The two
libraries alternate in rounds (ours, implicit, ours, implicit) of ``--epochs`` epochs each, because the
machine is shared and its load drifts; the figure is the median epoch after the first of each round.

Quality (``--dataset hetrec``): both fit implicit's 80/20 split (``implicit.evaluation.train_test_split``,
random_state 42) for their default number of epochs; precision@10 is implicit's
``ranking_metrics_at_k`` with each factor set inside an implicit model object; MPR (weighted by held-out
plays) is ``recsys_assets.core.metrics.evaluate_factors``, the same code for both.

Inputs: ours reads the product's weighted matrix (BM25 K1=100 B=0.8, artists as documents); BPR uses
only its pattern, and LMF's default alpha = 0 does too. implicit's BPR reads the same matrix; implicit's
LMF reads the binary pattern, since it takes the stored values themselves as confidences (on BM25
values its p@10 on HetRec is 0.003, on the pattern 0.138). Work per epoch differs by design: our LMF
draws ``neg_prop`` negatives per positive (default 1); implicit 0.7.3's ``lmf_update`` draws
``min(n, nnz_row * neg_prop)`` with ``n = item_vectors.shape[1]``, i.e. at most ``factors + 2`` per row.

    .venv/bin/python bench/ranking_vs_implicit.py --model all --dataset hetrec
    .venv/bin/python bench/ranking_vs_implicit.py --model bpr --dataset synthetic --epochs 3   # full size

The last line of output is one JSON object with, per model, ``time_ratio`` (ours / implicit),
``ours_p_at_10`` and ``implicit_p_at_10`` (null on synthetic data).
"""

from __future__ import annotations

import argparse
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

from als_vs_implicit import HETREC, SPLIT_SEED, load_hetrec, load_synthetic  # noqa: E402
from implicit.cpu.bpr import BayesianPersonalizedRanking  # noqa: E402
from implicit.cpu.lmf import LogisticMatrixFactorization  # noqa: E402
from implicit.evaluation import ranking_metrics_at_k, train_test_split  # noqa: E402

from recsys_assets.core.metrics import evaluate_factors  # noqa: E402
from recsys_assets.core.models.bpr import BprSettings, fit_bpr  # noqa: E402
from recsys_assets.core.models.lmf import LmfSettings, fit_lmf  # noqa: E402
from recsys_assets.core.weighting import weight_user_items  # noqa: E402


def ours_fit(
    model: str, weighted: sp.csr_matrix, epochs: int, threads: int
) -> tuple[list[float], np.ndarray, np.ndarray]:
    """Our default settings for ``model`` with ``epochs`` epochs: (seconds per epoch, users, items)."""
    if model == "bpr":
        s = BprSettings()
        r = fit_bpr(
            weighted,
            factors=s.factors,
            learning_rate=s.learning_rate,
            regularization=s.regularization,
            iterations=epochs,
            verify_negative=s.verify_negative,
            negatives=s.negatives,
            seed=s.seed,
            threads=threads,
        )
        return r.seconds, r.user_factors, r.item_factors
    s = LmfSettings()
    r = fit_lmf(
        weighted,
        factors=s.factors,
        learning_rate=s.learning_rate,
        regularization=s.regularization,
        iterations=epochs,
        neg_prop=s.neg_prop,
        alpha=s.alpha,
        negatives=s.negatives,
        seed=s.seed,
        threads=threads,
    )
    return r.seconds, r.user_factors, r.item_factors


def implicit_fit(model: str, weighted: sp.csr_matrix, epochs: int, threads: int):
    """implicit's defaults for ``model`` with ``epochs`` epochs: (seconds per epoch, fitted model)."""
    seconds: list[float] = []
    if model == "bpr":
        m = BayesianPersonalizedRanking(iterations=epochs, num_threads=threads, random_state=0)
        m.fit(weighted, show_progress=False, callback=lambda _e, elapsed, *_: seconds.append(elapsed))
    else:
        m = LogisticMatrixFactorization(iterations=epochs, num_threads=threads, random_state=0)
        binary = sp.csr_matrix(
            (np.ones_like(weighted.data), weighted.indices, weighted.indptr), shape=weighted.shape
        )
        m.fit(binary, show_progress=False, callback=lambda _e, elapsed, *_: seconds.append(elapsed))
    return seconds, m


def default_epochs(model: str) -> int:
    return BprSettings().iterations if model == "bpr" else LmfSettings().iterations


def tail_median(rounds: list[list[float]]) -> float:
    """Median over rounds of every epoch after a round's first."""
    return statistics.median([s for r in rounds for s in (r[1:] or r)])


def p_at_10(train, test, users, items, threads: int) -> float:
    """implicit's precision@10 for a factor set (inside an implicit model object)."""
    model = BayesianPersonalizedRanking(factors=users.shape[1] - 1, num_threads=threads)
    model.user_factors, model.item_factors = users, items
    return float(ranking_metrics_at_k(model, train, test, K=10, show_progress=False)["precision"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["bpr", "lmf", "all"], default="all")
    parser.add_argument("--dataset", choices=["hetrec", "synthetic"], default="hetrec")
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--plays", type=int, default=17_500_000)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per timing round")
    parser.add_argument("--rounds", type=int, default=2, help="alternating timing rounds per library")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    models = ["bpr", "lmf"] if args.model == "all" else [args.model]

    start = time.perf_counter()
    if args.dataset == "hetrec":
        if not HETREC.exists():
            parser.error(f"{HETREC} not found")
        plays = load_hetrec(HETREC)
        train, test = train_test_split(plays, train_percentage=0.8, random_state=SPLIT_SEED)
        train, test = train.tocsr(), test.tocsr()
    else:
        train, test = load_synthetic(args.users, args.artists, args.plays), None
    weighted = weight_user_items(train, "bm25", "artist_user", k1=100.0, b=0.8)
    print(
        f"data: {args.dataset} {train.shape[0]} users x {train.shape[1]} artists, {train.nnz} train pairs"
        + (f", {test.nnz} test pairs (split random_state={SPLIT_SEED})" if test is not None else "")
        + f" ({time.perf_counter() - start:.1f} s to build)",
        flush=True,
    )

    report: dict = {
        "dataset": args.dataset,
        "users": train.shape[0],
        "artists": train.shape[1],
        "nnz": train.nnz,
    }
    report |= {"threads": args.threads, "epochs_per_round": args.epochs, "rounds": args.rounds, "models": {}}
    with threadpool_limits(limits=1, user_api="blas"):
        for model in models:
            # Compile our kernels on a slice so compilation is not timed.
            ours_fit(model, weighted[:200], 1, args.threads)
            ours_rounds, imp_rounds = [], []
            for _ in range(args.rounds):
                ours_rounds.append(ours_fit(model, weighted, args.epochs, args.threads)[0])
                imp_rounds.append(implicit_fit(model, weighted, args.epochs, args.threads)[0])
            ours_s, imp_s = tail_median(ours_rounds), tail_median(imp_rounds)
            row = {
                "factors": (BprSettings() if model == "bpr" else LmfSettings()).factors,
                "ours_s_per_epoch": round(ours_s, 4),
                "implicit_s_per_epoch": round(imp_s, 4),
                "time_ratio": round(ours_s / imp_s, 3),
                "ours_p_at_10": None,
                "implicit_p_at_10": None,
            }
            print(
                f"{model}: s/epoch ours {ours_s:.4f}, implicit {imp_s:.4f}, ratio {ours_s / imp_s:.3f}",
                flush=True,
            )
            if test is not None:
                epochs = default_epochs(model)
                _, users, items = ours_fit(model, weighted, epochs, args.threads)
                _, imp = implicit_fit(model, weighted, epochs, args.threads)
                imp_users, imp_items = np.asarray(imp.user_factors), np.asarray(imp.item_factors)
                row["epochs"] = epochs
                row["ours_p_at_10"] = round(p_at_10(train, test, users, items, args.threads), 4)
                row["implicit_p_at_10"] = round(p_at_10(train, test, imp_users, imp_items, args.threads), 4)
                for name, (u, v) in {"ours": (users, items), "implicit": (imp_users, imp_items)}.items():
                    ranking = evaluate_factors(u, v, train, test, k=10, threads=args.threads)
                    row[f"{name}_mpr"] = round(ranking.mpr, 4)
                print(
                    f"{model}: p@10 ours {row['ours_p_at_10']:.4f}, implicit {row['implicit_p_at_10']:.4f}; "
                    f"MPR ours {row['ours_mpr']:.4f}, implicit {row['implicit_mpr']:.4f} ({epochs} epochs)",
                    flush=True,
                )
            report["models"][model] = row
    report["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
