"""The artist_aliases step at Last.fm-360K scale: time and peak RSS, per model, on the product's inputs.

Inputs as in ``bench/related.py`` (``bench/product_factors.py``: the make_lastfm_tsv play matrix,
ALS 32 and LSA 64 factors with the default settings, cached in /tmp). For each model the neighbours
come from the calibrated index of the default backend, as the refresh does above 50K artists (``build_ann_index`` then
``open_index``); the timed step is ``alias_table`` with the default ``[aliases]`` settings and the given
memory budget. Peak RSS of that step alone: the kernel's high-water mark is reset
(``/proc/self/clear_refs``) just before it and read (``VmHWM``) just after.

    flock /work/heavy.lock .venv/bin/python bench/aliases.py [--neighbours 120] [--memory-budget 1GB]

Prints a line per model and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import os
import pickle
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from product_factors import FULL, SMALL, product_inputs  # noqa: E402

from recsys_assets.core.factorset import FactorSet  # noqa: E402
from recsys_assets.pipeline import answers as related_assets  # noqa: E402
from recsys_assets.pipeline import indexes  # noqa: E402
from recsys_assets.settings import Settings  # noqa: E402


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--small", action="store_true", help="20K users x 20K artists x 1M plays")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--neighbours", type=int, default=None, help="[aliases] k (default 120)")
    parser.add_argument("--memory-budget", default=None, help="[runtime] memory_budget (default 4GB)")
    parser.add_argument("--models", default="als,lsa")
    args = parser.parse_args()
    load_start = os.getloadavg()
    print(f"load average at start: {load_start}")
    users, artists, per_user = SMALL if args.small else FULL
    settings = Settings()
    aliases = settings.aliases
    if args.neighbours:
        aliases = dataclasses.replace(aliases, k=args.neighbours)
    related = dataclasses.replace(settings.related, method="ann")
    plays, item_factors = product_inputs(users, artists, per_user, args.threads, settings)
    # The same harness measures the code before blocking (no memory budget parameter) for comparison.
    blocked = "memory_budget" in inspect.signature(related_assets.alias_table).parameters
    budget = None
    if blocked:
        from recsys_assets.settings import fingerprint, parse_size

        budget = parse_size(args.memory_budget or settings.runtime.memory_budget)
    results = {}
    with tempfile.TemporaryDirectory(prefix="recsys_bench_aliases_") as tmp:
        for model in args.models.split(","):
            vectors = item_factors[model]
            factors = FactorSet(model, np.zeros((1, vectors.shape[1]), np.float32), vectors, "bench")
            path = Path(tmp) / f"{model}.ann"
            if blocked:
                # The index asset's output (built and calibrated) is cached: it is not the step measured.
                cache = Path(
                    f"/tmp/recsys_bench_aliases_{artists}_{model}_{fingerprint(settings.ann, related)}.ref"
                )
                if cache.exists() and pickle.loads(cache.read_bytes()).file(cache.parent).exists():
                    ref = pickle.loads(cache.read_bytes())
                else:
                    path = cache.with_suffix(".index")
                    ref = indexes.build_ann_index(
                        factors, settings.ann, path, args.threads, path.parent, related
                    )
                    cache.write_bytes(pickle.dumps(ref))
                index = indexes.open_index(ref, cache.parent, aliases.k)
                extra = {"memory_budget": budget}
            else:
                ref = indexes.build_ann_index(factors, settings.ann, path, args.threads)
                index = indexes.open_index(ref, settings.ann, aliases.k)
                extra = {}
            rss_before = _rss_kib("VmRSS")
            Path("/proc/self/clear_refs").write_text("5")
            t = time.perf_counter()
            table = related_assets.alias_table(factors, plays, aliases, args.threads, index=index, **extra)
            seconds = time.perf_counter() - t
            peak = _rss_kib("VmHWM")
            results[model] = {
                "seconds": seconds,
                "peak_rss_gib": peak / 2**20,
                "rss_before_gib": rss_before / 2**20,
                "step_extra_gib": (peak - rss_before) / 2**20,
                "rows": len(table),
                "search_effort": getattr(index, "query_effort", getattr(index, "search_k", None)),
            }
            print(
                f"{model}: {seconds:.1f} s, peak RSS {peak / 2**20:.2f} GiB "
                f"({(peak - rss_before) / 2**20:.2f} GiB above the {rss_before / 2**20:.2f} GiB before), "
                f"{len(table)} candidate rows",
                flush=True,
            )
            del index, table
    load_end = os.getloadavg()
    print(f"load average at end: {load_end}")
    summary = {
        "artists": artists,
        "neighbours": aliases.k,
        "memory_budget_bytes": budget,
        "blocked": blocked,
        "threads": args.threads,
        "results": results,
        "process_peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "load_start": load_start,
        "load_end": load_end,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
