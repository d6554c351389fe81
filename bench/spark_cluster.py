"""The Spark stages on a standalone cluster started on localhost (1 master, N workers), then stopped.

Starts the cluster with pyspark's own ``spark-class`` (``recsys_assets.engines.standalone``), points a
session at its ``spark://`` master and runs weighting, ALS, all-user top-N and the metrics on an 80/20
split of HetRec (or a synthetic matrix), timing each stage; checks the lists exclude played artists.

    flock /work/heavy.lock timeout 600 .venv/bin/python bench/spark_cluster.py --workers 2 --cores 1
    .venv/bin/python bench/spark_cluster.py --dataset synthetic --users 20000 --artists 15000 --plays 1000000

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.models.als import AlsSettings  # noqa: E402
from recsys_assets.core.split import random_split  # noqa: E402
from recsys_assets.engines import spark as engine  # noqa: E402
from recsys_assets.engines.settings import EngineSettings  # noqa: E402
from recsys_assets.engines.standalone import standalone_cluster  # noqa: E402

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def load(args: argparse.Namespace):
    if args.dataset == "hetrec":
        import duckdb

        from recsys_assets.core.loaders import load_hetrec, read_play_matrix

        conn = duckdb.connect()
        load_hetrec(conn, HETREC)
        return read_play_matrix(conn)
    from recsys_assets.core.synthetic import generate_plays

    return generate_plays(args.users, args.artists, artists_per_user=args.plays / args.users, seed=0).to_csr()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--cores", type=int, default=1)
    parser.add_argument("--memory", default="1g", help="memory per worker")
    parser.add_argument("--executor-memory", default="768m", help="heap per executor (within --memory)")
    parser.add_argument("--dataset", choices=["hetrec", "synthetic"], default="hetrec")
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--artists", type=int, default=15_000)
    parser.add_argument("--plays", type=int, default=1_000_000)
    parser.add_argument("--iterations", type=int, default=15)
    args = parser.parse_args()

    split = random_split(load(args), test_fraction=0.2, seed=0)
    n_users, n_artists = split.train.shape
    seconds: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix="spark-cluster-bench-"))
    engine.write_pairs(split.train, f"{root}/train.parquet")
    engine.write_pairs(split.test, f"{root}/test.parquet")

    t = time.perf_counter()
    with standalone_cluster(workers=args.workers, cores=args.cores, memory=args.memory) as cluster:
        seconds["cluster_start"] = time.perf_counter() - t
        conf = {"spark.executor.memory": args.executor_memory}
        settings = EngineSettings(kind="spark", master=cluster.master, conf=conf)
        t = time.perf_counter()
        spark = engine.spark_session(settings)
        seconds["session"] = time.perf_counter() - t
        try:
            executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1

            def stage(name, run):
                start = time.perf_counter()
                value = run()
                seconds[name] = time.perf_counter() - start
                return value

            stage("weighting", lambda: engine.weight_plays(
                spark, f"{root}/train.parquet", f"{root}/weighted", n_users=n_users, n_artists=n_artists
            ))  # fmt: skip
            stage("als", lambda: engine.fit_als(
                spark, f"{root}/weighted", AlsSettings(iterations=args.iterations),
                n_users=n_users, n_artists=n_artists, factors_uri=f"{root}/factors",
            ))  # fmt: skip
            stage("recommendations", lambda: engine.recommend_all(
                spark, f"{root}/factors", f"{root}/train.parquet", f"{root}/recs", n=10
            ))  # fmt: skip
            metrics = stage("metrics", lambda: engine.ranking_metrics(
                spark, f"{root}/recs", f"{root}/test.parquet", k=10, n_artists=n_artists
            ))  # fmt: skip
        finally:
            spark.stop()

    lists = engine.read_recommendations(f"{root}/recs", n_users, 10)
    train = split.train.tocsr()
    played_in_lists = sum(
        int(np.isin(lists[u], train.indices[train.indptr[u] : train.indptr[u + 1]]).sum())
        for u in range(n_users)
    )
    print(
        json.dumps(
            {
                "dataset": args.dataset,
                "shape": [n_users, n_artists],
                "nnz_train": int(split.train.nnz),
                "master": cluster.master,
                "executors": executors,
                "workers": args.workers,
                "cores_per_worker": args.cores,
                "seconds": {k: round(v, 2) for k, v in seconds.items()},
                "p_at_10": round(metrics["precision"], 4),
                "played_in_lists": played_in_lists,
            }
        )
    )


if __name__ == "__main__":
    main()
