"""PMF, gravity MF and the shallow networks: speed at full scale and quality on HetRec.

``--part speed``: on the 360K x 300K x 17.5M synthetic matrix (built in memory), seconds of one PMF
epoch (the write-up's, observed pairs only, ``unobserved = 0``; and the default's, with sampled
unobserved pairs) and of one full-batch gradient-descent iteration of gravity MF against one ALS iteration
(``fit_als``, conjugate gradient) at the same factor count and thread count. Each is timed on its
second epoch / iteration (the first may include loading compiled kernels).

``--part quality``: HetRec Last.fm-2k through the product's loader, implicit's random 80/20 split
(``implicit.evaluation.train_test_split``, ``random_state`` = ``--seed``), every model at its default
settings (and each network architecture), p@10 and the other ranking metrics of
``recsys_assets.core.metrics`` next to the popularity baseline and the product's ALS; RMSE / MAE of the
held-out values (scaled as the model fits them) for the value-predicting models. Also the gravity
solvers side by side: loss reached and seconds spent by ``gd`` (2000 iterations, the write-up's run) and
``als``.

    flock /work/heavy.lock timeout 900 .venv/bin/python bench/seed_models.py --part speed [--skip-gravity]
    flock /work/heavy.lock timeout 900 .venv/bin/python bench/seed_models.py --part quality

The last line of output is one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.als import fit_als  # noqa: E402
from recsys_assets.core.metrics import evaluate_factors, evaluate_popularity, evaluate_scores  # noqa: E402
from recsys_assets.core.models import get_model  # noqa: E402
from recsys_assets.core.models.gravity import GravitySettings  # noqa: E402
from recsys_assets.core.models.gravity import fit as fit_gravity  # noqa: E402
from recsys_assets.core.models.nets import NetsSettings  # noqa: E402
from recsys_assets.core.models.pmf import PmfSettings  # noqa: E402
from recsys_assets.core.models.pmf import fit as fit_pmf  # noqa: E402
from recsys_assets.core.weighting import weight_user_items  # noqa: E402

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def speed(args) -> dict:
    from recsys_assets.core.synthetic import generate_plays

    start = time.perf_counter()
    plays = generate_plays(360_000, 300_000, artists_per_user=17_500_000 / 360_000, seed=0).to_csr()
    print(f"synthetic {plays.shape} nnz {plays.nnz} built in {time.perf_counter() - start:.1f} s", flush=True)
    f, threads = args.factors, args.threads
    confidence = plays.copy()
    confidence.data = np.log1p(confidence.data)
    als = fit_als(confidence, factors=f, iterations=2, threads=threads, compute_loss=False)
    print(f"ALS iterations (s): {als.seconds}", flush=True)
    # The write-up's epoch (observed pairs only: the speed target) and the default's (3 unobserved
    # pairs sampled per observed one).
    pmf = fit_pmf(
        plays,
        PmfSettings(factors=f, learning_rate=0.01, max_epochs=2, min_user_plays=0, unobserved=0),
        threads=threads,
    )
    print(f"PMF epochs, observed pairs only (s): {pmf.seconds}", flush=True)
    pmf_default = fit_pmf(plays, PmfSettings(factors=f, learning_rate=0.01, max_epochs=2), threads=threads)
    print(
        f"PMF epochs, default unobserved = {PmfSettings().unobserved} (s): {pmf_default.seconds}", flush=True
    )
    out = {
        "shape": list(plays.shape),
        "nnz": int(plays.nnz),
        "factors": f,
        "threads": threads,
        "als_iteration_s": als.seconds[-1],
        "pmf_epoch_s": pmf.seconds[-1],
        "pmf_default_epoch_s": pmf_default.seconds[-1],
    }
    out["pmf_over_als"] = out["pmf_epoch_s"] / out["als_iteration_s"]
    out["pmf_default_over_als"] = out["pmf_default_epoch_s"] / out["als_iteration_s"]
    if not args.skip_gravity:
        gravity = fit_gravity(plays, GravitySettings(factors=f, solver="gd", iterations=2), threads=threads)
        print(f"gravity GD iterations (s): {gravity.seconds}", flush=True)
        out["gravity_gd_iteration_s"] = gravity.seconds[-1]
        out["gravity_over_als"] = out["gravity_gd_iteration_s"] / out["als_iteration_s"]
    return out


def hetrec_split(seed: int):
    import duckdb
    from implicit.evaluation import train_test_split

    from recsys_assets.core.loaders import load_hetrec, read_play_matrix

    conn = duckdb.connect()
    load_hetrec(conn, HETREC)
    plays = read_play_matrix(conn)
    train, test = train_test_split(sp.csr_matrix(plays), train_percentage=0.8, random_state=seed)
    return sp.csr_matrix(train), sp.csr_matrix(test)


def value_errors(model, factors, settings, test: sp.csr_matrix) -> dict:
    scaled = model.value_transform(test, settings).tocoo()
    error = factors.predict(scaled.row, scaled.col) - scaled.data
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def quality(args) -> dict:
    train, test = hetrec_split(args.seed)
    rows = {"popularity": evaluate_popularity(train, test, k=10, threads=args.threads).as_dict()}
    weighted = weight_user_items(train, "bm25", "artist_user", k1=100.0, b=0.8)
    als_model = get_model("als")
    als = als_model.fit(weighted, als_model.settings(), threads=args.threads)
    rows["als"] = evaluate_factors(
        als.user_factors, als.item_factors, train, test, threads=args.threads
    ).as_dict()
    runs = [("pmf", None), ("gravity", None)] + [("nets", a) for a in ("dot", "dot_bias", "mlp")]
    for name, architecture in runs:
        model = get_model(name)
        settings = (
            model.settings() if architecture is None else replace(NetsSettings(), architecture=architecture)
        )
        start = time.perf_counter()
        factors = model.fit(train, settings, threads=args.threads)
        seconds = time.perf_counter() - start
        if model.score is not None:
            report = evaluate_scores(
                functools.partial(model.score, factors), train, test, threads=args.threads
            )
        else:
            report = evaluate_factors(
                factors.user_factors, factors.item_factors, train, test, threads=args.threads
            )
        row = report.as_dict() | {"fit_s": seconds}
        if model.predicts_values:
            row |= value_errors(model, factors, settings, test)
        label = name if architecture is None else f"nets/{architecture}"
        rows[label] = row
        print(
            f"{label:14s} p@10 {row['precision']:.4f}  fit {seconds:.1f} s  {row.get('rmse', '')}", flush=True
        )
    solvers = {}
    for solver, iterations in (("gd", 2000), ("als", 15), ("als", 40)):
        fitted = fit_gravity(
            train, GravitySettings(solver=solver, iterations=iterations), threads=args.threads
        )
        solvers[f"{solver}_{iterations}"] = {
            "final_loss": fitted.loss[-1],
            "seconds": float(sum(fitted.seconds)),
            "components": {k: v[-1] for k, v in fitted.loss_components.items()},
        }
        print(
            f"gravity {solver} x{iterations}: loss {fitted.loss[-1]:.4f} in {sum(fitted.seconds):.1f} s",
            flush=True,
        )
    print(f"\n{'model':14s} {'p@10':>7s} {'map@10':>7s} {'ndcg@10':>7s} {'auc':>7s} {'rmse':>7s} {'mae':>7s}")
    for label, row in rows.items():
        rmse = f"{row['rmse']:7.3f}" if "rmse" in row else f"{'':7s}"
        mae = f"{row['mae']:7.3f}" if "mae" in row else f"{'':7s}"
        print(
            f"{label:14s} {row['precision']:7.4f} {row['map']:7.4f} {row['ndcg']:7.4f} {row['auc']:7.4f} {rmse} {mae}"
        )
    return {"seed": args.seed, "models": rows, "gravity_solvers": solvers}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["speed", "quality"], required=True)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--factors", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-gravity", action="store_true", help="speed: time ALS and PMF only")
    args = parser.parse_args()
    result = speed(args) if args.part == "speed" else quality(args)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
