"""Tune ALS and LSA on HetRec Last.fm-2k and report the tuned held-out p@10 (issue 12's targets).

Usage: NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune.py [--models als lsa] [--threads 2] [--pinned]

HetRec through the product's loader, implicit's random 80/20 split (seed 0). For each model: the
untuned p@10 of the default settings under both weighting orientations (the starting points), then
:func:`recsys_assets.core.tuning.tune_split` with no hand-set model settings (it reads only the train
part), the winner fitted on the whole train part and scored on the test part. ``--pinned`` also tunes
with the orientation pinned to the default ``artist_user`` (a user who wrote it explicitly).
For halving searches, the agreement (Spearman, Kendall) between the first rung's user-sample ranking
and the full-data ranking of the candidates that reached the last rung. Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import duckdb

from recsys_assets.core.loaders import load_hetrec, read_play_matrix
from recsys_assets.core.metrics import evaluate_factors, evaluate_popularity
from recsys_assets.core.models import get_model
from recsys_assets.core.split import random_split
from recsys_assets.core.tuning import WeightingChoice, ranking_agreement, tune_split

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def p_at_10(model, settings, weighting: WeightingChoice, split, threads: int) -> float:
    matrix = split.train if model.input == "plays" else weighting.apply(split.train)
    factors = model.fit(matrix, settings, threads=threads)
    report = evaluate_factors(
        factors.user_factors, factors.item_factors, split.train, split.test, k=10, threads=threads
    )
    return float(report.precision)


def sample_agreement(result) -> dict[str, float] | None:
    rungs = sorted({row["rung"] for row in result.rows})
    if len(rungs) < 2:
        return None
    first = {row["candidate"].key(): row["objective"] for row in result.rows if row["rung"] == rungs[0]}
    last = {row["candidate"].key(): row["objective"] for row in result.rows if row["rung"] == rungs[-1]}
    return ranking_agreement(first, last)


def run(model_name: str, split, threads: int, fixed: frozenset[str], log) -> dict:
    model = get_model(model_name)
    base = model.settings()
    start = time.perf_counter()
    result = tune_split(split, model, base, fixed=fixed, threads=threads)
    seconds = time.perf_counter() - start
    tuned = p_at_10(model, result.chosen_settings, result.chosen_weighting, split, threads)
    row = {
        "model": model_name,
        "fixed": sorted(fixed),
        "method": result.method,
        "fits": len(result.rows),
        "tune_seconds": round(seconds, 1),
        "chosen_weighting": result.chosen_weighting.label(),
        "chosen_settings": {
            name: getattr(result.chosen_settings, name) for name in result.chosen_row["settings"]
        },
        "validation_p10": round(result.chosen_row["objective"], 4),
        "test_p10": round(tuned, 4),
        "sample_agreement": sample_agreement(result),
    }
    log(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HETREC)
    parser.add_argument("--models", nargs="+", default=["als", "lsa"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pinned", action="store_true")
    args = parser.parse_args()
    if not (args.data / "user_artists.dat").is_file():
        sys.exit(f"{args.data} has no user_artists.dat: pass --data <HetRec folder>")

    def log(line: str) -> None:
        print(line, flush=True)

    conn = duckdb.connect()
    load_hetrec(conn, args.data)
    split = random_split(read_play_matrix(conn), test_fraction=0.2, seed=0)
    out: dict = {"popularity_p10": round(evaluate_popularity(split.train, split.test, k=10).precision, 4)}
    for name in args.models:
        model = get_model(name)
        out[name] = {
            "untuned_p10": {
                orientation: round(
                    p_at_10(
                        model, model.settings(), WeightingChoice(orientation=orientation), split, args.threads
                    ),
                    4,
                )
                for orientation in ("artist_user", "user_artist")
            }
        }
        log(json.dumps({name: out[name]}))
        out[name]["tuned"] = run(name, split, args.threads, frozenset(), log)
        if args.pinned:
            out[name]["pinned_artist_user"] = run(
                name, split, args.threads, frozenset({"weighting.orientation"}), log
            )
    print(json.dumps(out))


if __name__ == "__main__":
    main()
