"""Spark MLlib ALS (local mode) against our numba ALS: seconds per iteration, and the JVM start-up cost.

Both fit the same BM25-weighted (K1=100, B=0.8, artist_user) Last.fm-360K-shaped synthetic matrix
(360K users x 300K artists x 17.5M pairs by default, built in memory by ``core.synthetic``) with the
same factors; Spark gets our settings mapped by ``engines.spark.map_als_settings``. Spark reports no
per-iteration time, so its seconds per iteration are measured as the difference of two fits,
``(t(1 + iterations) - t(1)) / iterations``, which cancels the fixed cost of blocking the ratings and
collecting the factors (reported too, as ``spark_fixed_s``); a one-iteration fit on 2% of the users
warms the JVM first. The JVM start-up cost is the time to the
first usable session (``spark_session`` + one trivial job).

    flock /work/heavy.lock timeout 900 .venv/bin/python bench/spark_als.py                 # full size
    .venv/bin/python bench/spark_als.py --users 20000 --artists 15000 --plays 1000000      # a quick look

Published for reference (8 cores, 64 factors): Spark local 43.8 s/iter, implicit 2.32 s/iter.
The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.als import fit_als  # noqa: E402
from recsys_assets.core.models.als import AlsSettings  # noqa: E402
from recsys_assets.core.synthetic import generate_plays  # noqa: E402
from recsys_assets.core.weighting import weight_user_items  # noqa: E402
from recsys_assets.engines import spark as engine  # noqa: E402
from recsys_assets.engines.settings import EngineSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--plays", type=int, default=17_500_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1, help="iterations measured on Spark")
    parser.add_argument("--numba-iterations", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--driver-memory", default="8g")
    parser.add_argument("--skip-numba", action="store_true")
    args = parser.parse_args()

    t = time.perf_counter()
    plays = generate_plays(
        args.users, args.artists, artists_per_user=args.plays / args.users, seed=0
    ).to_csr()
    weighted = weight_user_items(plays)
    print(
        f"matrix {weighted.shape} nnz {weighted.nnz:,} built in {time.perf_counter() - t:.1f} s", flush=True
    )
    als = AlsSettings(factors=args.factors, iterations=args.iterations)
    result: dict[str, object] = {
        "users": weighted.shape[0],
        "artists": weighted.shape[1],
        "nnz": weighted.nnz,
        "factors": args.factors,
        "cores": args.cores,
    }

    if not args.skip_numba:
        fit = fit_als(
            (weighted * als.alpha).tocsr(),
            factors=args.factors,
            regularization=als.regularization,
            iterations=args.numba_iterations,
            threads=args.cores,
            compute_loss=False,
        )
        per_iter = fit.seconds[1:] or fit.seconds
        result["numba_s_per_iter"] = round(statistics.median(per_iter), 3)
        result["numba_iter_s"] = [round(s, 3) for s in fit.seconds]
        print(f"numba: {fit.seconds}", flush=True)

    work = Path(tempfile.mkdtemp(prefix="spark-als-bench-"))
    try:
        t = time.perf_counter()
        engine.write_pairs(weighted, str(work / "weighted.parquet"), value="weight")
        result["parquet_write_s"] = round(time.perf_counter() - t, 2)

        t = time.perf_counter()
        settings = EngineSettings(
            kind="spark", master=f"local[{args.cores}]", conf={"spark.driver.memory": args.driver_memory}
        )
        spark = engine.spark_session(settings)
        spark.range(1).count()
        result["jvm_startup_s"] = round(time.perf_counter() - t, 2)
        print(f"JVM up in {result['jvm_startup_s']} s", flush=True)

        # Warm the JVM (class loading, JIT) on a slice of the users so the timed fits compare alike.
        t = time.perf_counter()
        warm = weighted[: max(1, weighted.shape[0] // 50)]
        engine.write_pairs(warm, str(work / "warm.parquet"), value="weight")
        engine.fit_als(
            spark,
            str(work / "warm.parquet"),
            AlsSettings(factors=args.factors, iterations=1),
            n_users=warm.shape[0],
            n_artists=warm.shape[1],
            factors_uri=str(work / "factors-warm"),
        )
        result["spark_warmup_s"] = round(time.perf_counter() - t, 2)
        times = {}
        for iterations in (1, 1 + args.iterations):
            t = time.perf_counter()
            engine.fit_als(
                spark,
                str(work / "weighted.parquet"),
                AlsSettings(factors=args.factors, iterations=iterations),
                n_users=weighted.shape[0],
                n_artists=weighted.shape[1],
                factors_uri=str(work / f"factors-{iterations}"),
            )
            times[iterations] = time.perf_counter() - t
            print(f"spark maxIter={iterations}: {times[iterations]:.1f} s", flush=True)
        spark.stop()
        per_iter = (times[1 + args.iterations] - times[1]) / args.iterations
        result["spark_fit_s"] = {str(k): round(v, 2) for k, v in times.items()}
        result["spark_s_per_iter"] = round(per_iter, 2)
        result["spark_fixed_s"] = round(times[1] - per_iter, 2)
        if "numba_s_per_iter" in result:
            result["spark_over_numba"] = round(per_iter / result["numba_s_per_iter"], 1)
        result["spark_s_per_iter_per_nnz_core"] = per_iter * args.cores / weighted.nnz
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result["host_cpus"] = os.cpu_count()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
