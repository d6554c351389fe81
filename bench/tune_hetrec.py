"""Sweep ALS settings on HetRec Last.fm-2k and report held-out metrics (the numbers behind the defaults).

Usage: .venv/bin/python bench/tune_hetrec.py [--seeds 0 1 2] [--threads 2]

Loads HetRec with the product's loader, splits with implicit's per-interaction random split
(`random_split`, identical to implicit's `train_test_split` for the same seed), weights the train
matrix as the product does, fits our ALS and evaluates with `evaluate_factors` (precision@10 as
implicit defines it, MPR weighted by plays). Prints a table; last line JSON with the best setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import duckdb
import numpy as np
import scipy.sparse as sp

from recsys_assets.core.als import fit_als
from recsys_assets.core.loaders import load_hetrec, read_play_matrix
from recsys_assets.core.metrics import evaluate_factors
from recsys_assets.core.split import random_split
from recsys_assets.core.weighting import weight_user_items

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def hetrec_matrix(folder: Path) -> sp.csr_matrix:
    """HetRec plays as a users x artists matrix, through the product's loader."""
    conn = duckdb.connect()
    load_hetrec(conn, folder)
    return read_play_matrix(conn)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HETREC)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factors", type=int, nargs="+", default=[64, 100, 128])
    parser.add_argument("--regularization", type=float, nargs="+", default=[0.01, 0.05, 0.1])
    parser.add_argument("--alpha", type=float, nargs="+", default=[1.0, 2.0])
    parser.add_argument("--orientation", nargs="+", default=["artist_user", "user_artist"])
    args = parser.parse_args()
    if not (args.data / "user_artists.dat").is_file():
        sys.exit(f"{args.data} has no user_artists.dat: pass --data <HetRec folder>")
    X = hetrec_matrix(args.data)
    splits = {seed: random_split(X, test_fraction=0.2, seed=seed) for seed in args.seeds}
    results = []
    print("orientation   factors  reg    alpha  p@10    map@10  ndcg@10 mpr     auc")
    for orientation, factors, reg, alpha in itertools.product(
        args.orientation, args.factors, args.regularization, args.alpha
    ):
        reports = []
        for split in splits.values():
            W = weight_user_items(split.train, "bm25", orientation, k1=100.0, b=0.8)
            model = fit_als(
                (W * np.float32(alpha)).tocsr(),
                factors=factors,
                regularization=reg,
                iterations=15,
                seed=0,
                threads=args.threads,
                compute_loss=False,
            )
            reports.append(
                evaluate_factors(
                    model.user_factors,
                    model.item_factors,
                    split.train,
                    split.test,
                    k=10,
                    threads=args.threads,
                )
            )
        mean = {
            m: float(np.mean([getattr(r, m) for r in reports]))
            for m in ("precision", "map", "ndcg", "mpr", "auc")
        }
        row = {"orientation": orientation, "factors": factors, "regularization": reg, "alpha": alpha} | mean
        results.append(row)
        print(
            f"{orientation:13s} {factors:7d}  {reg:<6g} {alpha:<6g} {mean['precision']:.4f}  {mean['map']:.4f}  "
            f"{mean['ndcg']:.4f}  {mean['mpr']:.4f}  {mean['auc']:.4f}",
            flush=True,
        )
    best = max(results, key=lambda r: r["precision"])
    print(json.dumps({"best_by_precision": best, "seeds": args.seeds, "n_settings": len(results)}))


if __name__ == "__main__":
    main()
