"""Factor copies Spark's ALS ships per ALS half-step, per stored pair, for a given number of blocks.

Spark MLlib ALS hash-partitions users and artists into blocks (``id mod B``) and, before each
half-step, sends every source factor once to each destination block that holds a pair of it. The
shuffle of one half-step is therefore ``copies x (4 k + 4)`` bytes (factor plus id), with ``copies`` =
distinct (artist, user block) pairs (user half-step) or distinct (user, artist block) pairs (artist
half-step). This counts them exactly on a Last.fm-shaped synthetic matrix; ``docs/scale.md`` uses the
counts per stored pair.

    .venv/bin/python bench/als_shuffle_copies.py --users 100000 --artists 80000 --plays 5000000

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.synthetic import generate_plays  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--artists", type=int, default=80_000)
    parser.add_argument("--plays", type=int, default=5_000_000)
    parser.add_argument("--blocks", type=int, nargs="+", default=[8, 64, 512])
    args = parser.parse_args()
    X = (
        generate_plays(args.users, args.artists, artists_per_user=args.plays / args.users, seed=0)
        .to_csr()
        .tocoo()
    )
    rows, cols = X.row.astype(np.int64), X.col.astype(np.int64)
    out: dict[str, object] = {"users": X.shape[0], "artists": X.shape[1], "nnz": int(X.nnz)}
    for B in args.blocks:
        out[f"blocks_{B}"] = {
            "artist_copies_per_nnz": round(np.unique(cols * B + rows % B).size / X.nnz, 4),
            "user_copies_per_nnz": round(np.unique(rows * B + cols % B).size / X.nnz, 4),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
