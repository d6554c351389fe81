"""Tuning seconds at Last.fm-360K scale, and how well a user sample ranks the candidates (issue 12).

Usage:
    NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune_scale.py [--models als lsa] [--set key=value ...]
    NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune_scale.py --agreement --users 20000 --artists 16000

Default: the synthetic matrix of ``bench/make_lastfm_tsv.py`` (360K users x 300K artists, 49 artists
per user, seed 0; cached as an .npz), the pipeline's default evaluation split (``[evaluation]`` defaults),
and for each model exactly what its ``<model>_tuning`` asset runs (:func:`run_tuning` with the model's
default section, the default ``[weighting]``, nothing fixed and ``[tuning]`` at its defaults with
``mode = "auto"``; ``--set`` overrides ``[tuning]`` keys). Reports each model's seconds, fits, chosen
point and whether the budget stopped the search.

``--agreement``: on a size where the full search is affordable, the whole ALS grid scored on every
validation user with the model's own iterations vs the same grid on the sample the budget-aware defaults
would use at full scale (fraction of users and iteration cap), and the Spearman / Kendall agreement of the
two rankings. Last line JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.models import get_model
from recsys_assets.core.synthetic import generate_plays
from recsys_assets.core.tuning import TuningSettings, default_grid, ranking_agreement, tune_split
from recsys_assets.pipeline.evaluation import make_split
from recsys_assets.pipeline.tuning import run_tuning
from recsys_assets.settings import EvaluationSettings, WeightingSettings


def plays_matrix(users: int, artists: int, per_user: float, cache: Path | None) -> sp.csr_matrix:
    if cache is not None and cache.is_file():
        return sp.load_npz(cache).tocsr()
    matrix = generate_plays(n_users=users, n_artists=artists, artists_per_user=per_user, seed=0).to_csr()
    if cache is not None:
        sp.save_npz(cache, matrix, compressed=False)
    return matrix


def parse_value(text: str):
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--artists-per-user", type=float, default=49.0)
    parser.add_argument("--cache", type=Path, help="npz of the play matrix (written when missing)")
    parser.add_argument("--models", nargs="+", default=["als", "lsa"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", nargs="*", default=[], help="[tuning] key=value overrides")
    parser.add_argument("--agreement", action="store_true")
    parser.add_argument("--sample-fraction", type=float, default=None,
                        help="--agreement: fraction of validation users of the sampled search")
    parser.add_argument("--sample-iterations", type=int, default=None)
    parser.add_argument("--factors", type=int, nargs="+", default=None,
                        help="--agreement: the ALS factors of the grid (default: the default grid's)")
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    start = time.perf_counter()
    plays = plays_matrix(args.users, args.artists, args.artists_per_user, args.cache)
    ev = EvaluationSettings()
    split = make_split(plays, **ev.split_params())
    out: dict = {"shape": list(plays.shape), "nnz": int(plays.nnz), "data_seconds": round(time.perf_counter() - start, 1)}
    log(json.dumps(out))
    overrides = {k: parse_value(v) for k, v in (item.split("=", 1) for item in args.set)}
    tuning = TuningSettings(**{"mode": "auto", **overrides})
    out["tuning"] = {k: v for k, v in dataclasses.asdict(tuning).items()}
    if args.agreement:
        out["agreement"] = agreement(split, tuning, args, log)
    else:
        total = 0.0
        for name in args.models:
            model = get_model(name)
            t0 = time.perf_counter()
            result, tuned = run_tuning(
                model, split, model.settings(), WeightingSettings(), tuning, frozenset(), args.threads, log=log
            )
            seconds = time.perf_counter() - t0
            total += seconds
            out[name] = {
                "seconds": round(seconds, 1),
                "method": result.method,
                "fits": len(result.rows),
                "search": getattr(result, "budget", None),
                "chosen_weighting": result.chosen_row["weighting"],
                "chosen_settings": result.chosen_row["settings"],
                "validation_objective": round(result.chosen_row["objective"], 4),
            }
            log(json.dumps({name: out[name]}, default=str))
        out["total_seconds"] = round(total, 1)
    print(json.dumps(out, default=str))


def agreement(split, tuning: TuningSettings, args, log) -> dict:
    """Full grid on every validation user (model's own iterations) vs the sampled, capped grid."""
    model = get_model("als")
    n_users = split.train.shape[0]
    # Default: the share of users the automatic sample takes at Last.fm-360K scale (1M of 14M train plays).
    fraction = args.sample_fraction if args.sample_fraction is not None else 1 / 14
    iterations = args.sample_iterations
    grid = default_grid("als", type(model.settings()))
    if args.factors:
        grid["factors"] = tuple(args.factors)
    scores = {}
    out: dict = {"grid": {k: list(v) for k, v in grid.items()}, "users": n_users, "sample_fraction": fraction, "sample_iterations": iterations}
    for label, kwargs in (
        ("full", {"user_sample": None, "sample_plays": None, "search_iterations": None, "budget_seconds": None}),
        ("sample", {"user_sample": max(1, int(round(n_users * fraction))), "search_iterations": iterations,
                    "sample_plays": None, "budget_seconds": None}),
    ):
        t0 = time.perf_counter()
        arguments = {**tuning.search_arguments(), "method": "grid", **kwargs}
        result = tune_split(split, model, model.settings(), threads=args.threads, grid=grid, **arguments)
        out[f"{label}_seconds"] = round(time.perf_counter() - t0, 1)
        scores[label] = {row["candidate"].key(): row["objective"] for row in result.rows}
        out[f"{label}_best"] = result.chosen_row["candidate"].key()
        log(json.dumps({label: out[f"{label}_seconds"], "best": out[f"{label}_best"]}))
    out |= {k: round(v, 4) for k, v in ranking_agreement(scores["sample"], scores["full"]).items()}
    out["full_score_of_sample_best"] = round(scores["full"][out["sample_best"]], 4)
    out["full_best_score"] = round(max(scores["full"].values()), 4)
    ordered = sorted(scores["full"], key=scores["full"].get, reverse=True)
    out["rank_in_full_of_sample_best"] = ordered.index(out["sample_best"]) + 1
    return out


if __name__ == "__main__":
    main()
