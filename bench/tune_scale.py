"""Tuning seconds at Last.fm-360K scale, and how well a user sample ranks the candidates (issue 12).

Usage:
    NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune_scale.py [--models als lsa] [--set key=value ...]
    NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune_scale.py --agreement --users 18000 --artists 15000 \\
        --factors 32 --sample-fractions 0.0714 0.3333 --noise-floor

Default: the synthetic matrix of ``bench/make_lastfm_tsv.py`` (360K users x 300K artists, 49 artists
per user, seed 0; cached as an .npz), the pipeline's default evaluation split (``[evaluation]`` defaults),
and for each model exactly what its ``<model>_tuning`` asset runs (:func:`run_tuning` with the model's
default section, the default ``[weighting]``, nothing fixed and ``[tuning]`` at its defaults with
``mode = "auto"``; ``--set`` overrides ``[tuning]`` keys). Reports each model's seconds, fits, chosen
point and whether the budget stopped the search.

``--agreement``: on a size where the full search is affordable, the whole ALS grid scored on every
validation user with the model's own iterations vs the same grid on user samples of that validation split
(``--sample-fractions``, default 1/14: the share the automatic sample takes at full scale), with the
Spearman / Kendall agreement of each sample's ranking with the full one and where the sample's pick
ranks on the full data; ``--noise-floor`` also scores the full grid on another validation split (how
reproducible the full ranking itself is). Last line JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

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
    parser.add_argument(
        "--sample-fractions",
        type=float,
        nargs="+",
        default=[1 / 14],
        help="--agreement: fractions of the validation users of the sampled searches "
        "(default: the share the automatic sample takes at Last.fm-360K scale, 1M of 14M plays)",
    )
    parser.add_argument(
        "--noise-floor",
        action="store_true",
        help="--agreement: also the full grid on another validation split",
    )
    parser.add_argument("--sample-iterations", type=int, default=None)
    parser.add_argument(
        "--factors",
        type=int,
        nargs="+",
        default=None,
        help="--agreement: the ALS factors of the grid (default: the default grid's)",
    )
    args = parser.parse_args()

    def log(line: str) -> None:
        print(line, flush=True)

    start = time.perf_counter()
    plays = plays_matrix(args.users, args.artists, args.artists_per_user, args.cache)
    ev = EvaluationSettings()
    split = make_split(plays, **ev.split_params())
    out: dict = {
        "shape": list(plays.shape),
        "nnz": int(plays.nnz),
        "data_seconds": round(time.perf_counter() - start, 1),
    }
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
                model,
                split,
                model.settings(),
                WeightingSettings(),
                tuning,
                frozenset(),
                args.threads,
                log=log,
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
    """The ALS grid on every validation user (the model's own iterations) vs the same grid on user
    samples of that validation split (``--sample-fractions``), and vs the full grid on another validation
    split (seed + 1: how reproducible the full ranking itself is, the ceiling for any sample)."""
    model = get_model("als")
    n_users = split.train.shape[0]
    grid = default_grid("als", type(model.settings()))
    if args.factors:
        grid["factors"] = tuple(args.factors)
    out: dict = {"grid": {k: list(v) for k, v in grid.items()}, "users": n_users}
    plain = {"sample_plays": None, "budget_seconds": None, "search_iterations": args.sample_iterations}

    def search(label: str, **kwargs) -> dict[str, float]:
        t0 = time.perf_counter()
        arguments = {**tuning.search_arguments(), "method": "grid", **plain, **kwargs}
        result = tune_split(split, model, model.settings(), threads=args.threads, grid=grid, **arguments)
        scores = {row["candidate"].key(): row["objective"] for row in result.rows}
        out[label] = {
            "seconds": round(time.perf_counter() - t0, 1),
            "best": result.chosen_row["candidate"].key(),
            "users": result.search_users,
            "artists": result.search_items,
        }
        log(json.dumps({label: out[label]}))
        return scores

    full = search("full", user_sample=None, search_iterations=None)
    ordered = sorted(full, key=full.get, reverse=True)
    out["full_best_score"] = round(full[ordered[0]], 4)
    others = [
        (f"sample_{f:.4g}", {"user_sample": max(1, int(round(n_users * f)))}) for f in args.sample_fractions
    ]
    if args.noise_floor:
        others.append(
            ("full_seed+1", {"user_sample": None, "search_iterations": None, "seed": tuning.seed + 1})
        )
    for label, kwargs in others:
        scores = search(label, **kwargs)
        best = out[label]["best"]
        out[label] |= {k: round(v, 4) for k, v in ranking_agreement(scores, full).items()}
        out[label] |= {
            "full_score_of_its_best": round(full[best], 4),
            "rank_in_full_of_its_best": ordered.index(best) + 1,
        }
        log(json.dumps({label: out[label]}))
    return out


if __name__ == "__main__":
    main()
