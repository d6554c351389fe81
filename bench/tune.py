"""Tune ALS and LSA on HetRec Last.fm-2k and report the tuned held-out p@10 (issue 12's targets).

Usage: NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune.py [--models als lsa] [--threads 2] [--pinned]

HetRec through the product's loader, implicit's random 80/20 split (seed 0). For each model: the
untuned p@10 of the default settings under both weighting orientations (the starting points), then
:func:`recsys_assets.core.tuning.tune_split` with no hand-set model settings (it reads only the train
part), the winner fitted on the whole train part and scored on the test part. ``--pinned`` also tunes
with the orientation pinned to the default ``artist_user`` (a user who wrote it explicitly).
For halving searches, the agreement (Spearman, Kendall) of the first two rungs' rankings;
``--agreement`` grids ALS on all validation users and on a third of them with 8 iterations and reports
the rank agreement of the two over every candidate. ``--synthetic`` uses the synthetic default data
(3000 users x 4000 artists) instead of HetRec. Last line JSON.
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
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.tuning import WeightingChoice, ranking_agreement, tune_split
from recsys_assets.core.tuning_plots import tuning_heatmaps

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def p_at_10(model, settings, weighting: WeightingChoice, split, threads: int) -> float:
    matrix = split.train if model.input == "plays" else weighting.apply(split.train)
    factors = model.fit(matrix, settings, threads=threads)
    report = evaluate_factors(
        factors.user_factors, factors.item_factors, split.train, split.test, k=10, threads=threads
    )
    return float(report.precision)


def rung_agreement(result) -> dict[str, float] | None:
    """Agreement of the first two halving rungs (user sample vs larger sample) on the second's candidates."""
    rungs = sorted({row["rung"] for row in result.rows})
    if len(rungs) < 2:
        return None
    first, second = (
        {row["candidate"].key(): row["objective"] for row in result.rows if row["rung"] == rung}
        for rung in rungs[:2]
    )
    return ranking_agreement(first, second)


def sample_vs_full(model_name: str, split, threads: int, log) -> dict:
    """Grid on every validation user and full iterations vs grid on a third of the users with 8 iterations:
    the rank agreement of the two scorings over every candidate, and their seconds."""
    model = get_model(model_name)
    out = {}
    scores = {}
    for label, kwargs in (
        ("full", {}),
        ("sample", {"user_sample": split.train.shape[0] // 3, "search_iterations": 8}),
    ):
        start = time.perf_counter()
        result = tune_split(split, model, model.settings(), method="grid", threads=threads, **kwargs)
        out[f"{label}_seconds"] = round(time.perf_counter() - start, 1)
        scores[label] = {row["candidate"].key(): row["objective"] for row in result.rows}
        out[f"{label}_best"] = result.chosen_row["candidate"].key()
    out |= {k: round(v, 4) for k, v in ranking_agreement(scores["sample"], scores["full"]).items()}
    best_full = max(scores["full"].values())
    out["full_score_of_sample_best"] = round(scores["full"][out["sample_best"]], 4)
    out["full_best_score"] = round(best_full, 4)
    log(json.dumps({"agreement": out}))
    return out


def run(
    model_name: str, split, threads: int, fixed: frozenset[str], log, out_dir: Path | None = None
) -> dict:
    model = get_model(model_name)
    base = model.settings()
    start = time.perf_counter()
    result = tune_split(split, model, base, fixed=fixed, threads=threads)
    seconds = time.perf_counter() - start
    tuned = p_at_10(model, result.chosen_settings, result.chosen_weighting, split, threads)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        tag = "-pinned" if fixed else ""
        for (x, y), png in tuning_heatmaps(result).items():
            (out_dir / f"{model_name}{tag}-{x}-{y}.png").write_bytes(png)
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
        "rung_agreement": rung_agreement(result),
    }
    log(json.dumps(row))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HETREC)
    parser.add_argument("--models", nargs="+", default=["als", "lsa"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--pinned", action="store_true")
    parser.add_argument("--agreement", action="store_true", help="ALS: sample-vs-full rank agreement")
    parser.add_argument("--out", type=Path, help="write the tuning heatmaps (PNG) here")
    parser.add_argument(
        "--synthetic", action="store_true", help="the synthetic default data instead of HetRec"
    )
    args = parser.parse_args()
    if not args.synthetic and not (args.data / "user_artists.dat").is_file():
        sys.exit(f"{args.data} has no user_artists.dat: pass --data <HetRec folder>")

    def log(line: str) -> None:
        print(line, flush=True)

    if args.synthetic:
        # The defaults of [synthetic] (SyntheticSettings).
        plays = generate_plays(
            n_users=3000, n_artists=4000, artists_per_user=50.0, n_genres=40, seed=0
        ).to_csr()
    else:
        conn = duckdb.connect()
        load_hetrec(conn, args.data)
        plays = read_play_matrix(conn)
    split = random_split(plays, test_fraction=0.2, seed=0)
    out: dict = {
        "data": "synthetic default" if args.synthetic else "hetrec",
        "shape": list(plays.shape),
        "nnz": int(plays.nnz),
        "popularity_p10": round(evaluate_popularity(split.train, split.test, k=10).precision, 4),
    }
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
        out[name]["tuned"] = run(name, split, args.threads, frozenset(), log, args.out)
        if args.pinned:
            out[name]["pinned_artist_user"] = run(
                name, split, args.threads, frozenset({"weighting.orientation"}), log, args.out
            )
        if args.agreement and name == "als":
            out[name]["sample_vs_full"] = sample_vs_full(name, split, args.threads, log)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
