"""Related artists at Last.fm-360K scale, on the factors the product itself fits, Annoy against HNSW.

Inputs are the product's own (``bench/product_factors.py``: the play matrix of
``bench/make_lastfm_tsv.py``, weighted and fitted with the default settings, i.e. ALS 32 factors and LSA
64 factors over BM25), cached in /tmp. For each model and backend the benchmark runs what the refresh
runs, with the default settings apart from the backend:

1. the index asset's work, ``build_ann_index``: build, then calibrate the query effort (``search_k`` /
   ``ef_search`` doubled from the configured value until recall@10 on 1,000 seeded artists reaches
   ``min_recall_at_10 + recall_margin`` = 0.96, or exact top-k when the index cannot get there more
   cheaply than exact would answer);
2. the related asset's work, ``related_lists``: top-20 for every artist with the chosen setting, and
   recall@10 against exact cosine top-10 on the asset check's own 2,000-artist sample.

``--exact-all`` also times exact top-20 for every artist (otherwise it is the calibration's estimate).

    .venv/bin/python bench/related.py --small           # 20K x 20K, about a minute
    flock /work/heavy.lock .venv/bin/python bench/related.py     # full size (300K artists), heavy

Prints a table and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from product_factors import FULL, SMALL, product_inputs  # noqa: E402

from recsys_assets.core.factorset import FactorSet  # noqa: E402
from recsys_assets.core.topk import cosine_topk  # noqa: E402
from recsys_assets.pipeline.answers import related_lists  # noqa: E402
from recsys_assets.pipeline.indexes import build_ann_index  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="20K users x 20K artists x 1M plays")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", default="annoy,hnsw", help="comma-separated: annoy, hnsw")
    parser.add_argument("--models", default="als,lsa", help="comma-separated: als, lsa")
    parser.add_argument("--hnsw-m", type=int, default=None, help="[ann] M (default: the setting's)")
    parser.add_argument("--ef-construction", type=int, default=None, help="[ann] ef_construction")
    parser.add_argument("--n-trees", type=int, default=None, help="[ann] n_trees")
    parser.add_argument("--exact-all", action="store_true", help="also time exact top-n for every artist")
    args = parser.parse_args()
    threads = args.threads
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}")
    users, artists, per_user = SMALL if args.small else FULL
    settings = Settings()
    # The product only uses the index above exact_max_artists; the small run uses it too, to be measured.
    related = dataclasses.replace(settings.related, method="ann")
    _, item_factors = product_inputs(users, artists, per_user, threads, settings)

    results: dict[str, dict] = {}
    header = f"{'model':5} {'backend':7} {'build s':>8} {'calib s':>8} {'effort':>16} {'query s':>8} {'total s':>8} {'recall':>7} method"
    print(header)
    with tempfile.TemporaryDirectory(prefix="recsys_bench_related_") as tmp:
        for model in args.models.split(","):
            vectors = item_factors[model]
            factors = FactorSet(model, np.zeros((1, vectors.shape[1]), np.float32), vectors, "bench")
            for backend in args.backends.split(","):
                ann = dataclasses.replace(settings.ann, backend=backend)
                for field, value in (
                    ("M", args.hnsw_m),
                    ("ef_construction", args.ef_construction),
                    ("n_trees", args.n_trees),
                ):
                    if value is not None:
                        ann = dataclasses.replace(ann, **{field: value})
                t = time.perf_counter()
                ref = build_ann_index(
                    factors, ann, Path(tmp) / f"{model}.{backend}", threads, Path(tmp), related
                )
                index_s = time.perf_counter() - t
                calibration = ref.calibration or {}
                calibration_s = float(calibration.get("calibration_s", 0.0))
                t = time.perf_counter()
                frame, recall, method = related_lists(ref, tmp, factors, related, ann.seed, threads)
                related_s = time.perf_counter() - t
                row = {
                    "build_params": ref.build_params,
                    "build_s": index_s - calibration_s,
                    "calibration_s": calibration_s,
                    "index_asset_s": index_s,
                    "related_s": related_s,
                    "total_s": index_s + related_s,
                    "recall_at_10": recall,
                    "method": method,
                    "query_params": ref.query_params,
                    "calibration_recall": calibration.get("calibration_recall"),
                    "exact_all_estimate_s": calibration.get("exact_all_estimate_s"),
                    "trials": calibration.get("trials", []),
                    "rows": len(frame),
                }
                results[f"{model}_{backend}"] = row
                effort = ",".join(f"{k}={v}" for k, v in ref.query_params.items())
                print(
                    f"{model:5} {backend:7} {row['build_s']:8.1f} {calibration_s:8.1f} {effort:>16} "
                    f"{related_s:8.1f} {row['total_s']:8.1f} {recall:7.3f} {method}",
                    flush=True,
                )
                for trial in row["trials"]:
                    print(
                        f"      trial effort {trial['effort']:>7}: recall {trial['recall']:.3f}, "
                        f"query all (est.) {trial['query_all_s']:.1f} s"
                    )
            if args.exact_all:
                t = time.perf_counter()
                cosine_topk(vectors, related.n, threads=threads)
                results[f"{model}_exact"] = {"total_s": time.perf_counter() - t, "recall_at_10": 1.0}
                print(
                    f"{model:5} exact   top-{related.n} for all: {results[f'{model}_exact']['total_s']:.1f} s"
                )

    best = {}
    for model in args.models.split(","):
        passing = {
            k: r
            for k, r in results.items()
            if k.startswith(model + "_") and r["recall_at_10"] >= related.min_recall_at_10
        }
        best[model] = min(passing, key=lambda k: passing[k]["total_s"]) if passing else None
    load_end = os.getloadavg()
    print(f"load average at end: {load_end}")
    print(f"fastest at recall@10 >= {related.min_recall_at_10}: {best}")
    summary = {
        "artists": artists,
        "users": users,
        "threads": threads,
        "n": related.n,
        "target_recall": related.min_recall_at_10,
        "calibration_target": related.min_recall_at_10 + settings.ann.recall_margin,
        "fastest": best,
        "results": results,
        "load_start": load_start,
        "load_end": load_end,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
