"""What live progress costs the long kernels: each stage timed with and without a progress reporter.

Stages (same process, same data, alternating plain / followed runs ``--repeats`` times each after one
warm-up of both, so drift and caches hit both alike):

* ``evaluate``: ``evaluate_factors`` over every user with a test item (20 % per-user holdout);
* ``recommend``: ``topk_dot`` top-``--n`` for every user, played artists excluded;
* ``related``: ``cosine_topk`` top-``--n`` for every artist (the exact related-artists path);
* ``aliases``: ``alias_candidates`` with exact neighbours (``--alias-k`` per artist).

"Followed" passes a :class:`recsys_assets.progress.Progress` in plain-lines mode writing to memory (its
report cost is what a terminal or a log would pay, without the terminal). The ratio is followed / plain
of the summed seconds; results are also compared (they must be identical).

Plays come from the synthetic generator; factors are random normal (the slow case for the early exits).

    .venv/bin/python bench/progress_overhead.py                       # 100K users x 100K artists
    .venv/bin/python bench/progress_overhead.py --stages evaluate --repeats 3

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.aliases import alias_candidates  # noqa: E402
from recsys_assets.core.metrics import evaluate_factors  # noqa: E402
from recsys_assets.core.split import per_user_holdout  # noqa: E402
from recsys_assets.core.synthetic import generate_plays  # noqa: E402
from recsys_assets.core.topk import cosine_topk, topk_dot  # noqa: E402
from recsys_assets.progress import Progress  # noqa: E402


def same(a: object, b: object) -> bool:
    if isinstance(a, tuple):
        return all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, pd.DataFrame):
        return a.equals(b)
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--artists", type=int, default=100_000)
    parser.add_argument("--per-user", type=float, default=50.0)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--alias-k", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--stages", default="evaluate,recommend,related,aliases")
    args = parser.parse_args()

    plays = generate_plays(
        n_users=args.users, n_artists=args.artists, artists_per_user=args.per_user, seed=0
    ).to_csr()
    split = per_user_holdout(plays, test_fraction=0.2, min_items=5, seed=0)
    rng = np.random.default_rng(0)
    scale = np.float32(1.0 / np.sqrt(args.factors))
    users = rng.standard_normal((plays.shape[0], args.factors), dtype=np.float32) * scale
    items = rng.standard_normal((plays.shape[1], args.factors), dtype=np.float32) * scale
    t = args.threads
    stages = {
        "evaluate": lambda p: evaluate_factors(users, items, split.train, split.test, k=10, threads=t, progress=p),
        "recommend": lambda p: topk_dot(users, items, args.n, exclude=plays, threads=t, progress=p),
        "related": lambda p: cosine_topk(items, args.n, threads=t, progress=p),
        "aliases": lambda p: alias_candidates(items, plays, k=args.alias_k, threads=t, progress=p),
    }
    out: dict[str, object] = {"users": plays.shape[0], "artists": plays.shape[1], "threads": t}
    for name in args.stages.split(","):
        run = stages[name]
        times: dict[str, list[float]] = {"plain": [], "followed": []}
        reports = 0
        results = {}
        for repeat in range(args.repeats + 1):  # the first round warms up (compilation cache, pages)
            for mode in ("plain", "followed"):
                stream = io.StringIO()
                progress = Progress(name, display="lines", stream=stream) if mode == "followed" else None
                calls = [0]
                if progress is not None:
                    inner = progress

                    def progress(done, total=None, _inner=inner, _calls=calls, **info):  # noqa: ANN001, ANN202
                        _calls[0] += 1
                        _inner(done, total, **info)

                start = time.perf_counter()
                results[mode] = run(progress)
                seconds = time.perf_counter() - start
                if mode == "followed":
                    inner.close()
                    reports = calls[0]
                if repeat:
                    times[mode].append(seconds)
        plain, followed = sum(times["plain"]), sum(times["followed"])
        out[name] = {
            "plain_s": [round(s, 3) for s in times["plain"]],
            "followed_s": [round(s, 3) for s in times["followed"]],
            "ratio": round(followed / plain, 4),
            "reports_per_run": reports,
            "identical": same(results["plain"], results["followed"]),
        }
        print(name, out[name], flush=True)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
