"""Choose PMF and network settings on HetRec by a validation split carved from the training part only.

The refresh's split (``[evaluation] split = "random"``: :func:`random_split`, 20 % test, seed 0) is made
first and its test part is never looked at; the training part is split again the same way (20 %,
``--valid-seed``) into a fitting part and a validation part. Each candidate is fitted on the fitting
part and ranked on the validation part (p@10 as the evaluation defines it), next to the popularity
baseline on the same parts. Candidates are JSON objects of settings overriding the model's defaults:

    flock /work/heavy.lock timeout 900 .venv/bin/python bench/tune_seed_models.py --model pmf \\
        --candidates '{}' '{"unobserved": 1}' '{"unobserved": 2, "regularization": 0.05}'

The last line of output is one JSON object (one row per candidate).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import duckdb
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.loaders import load_hetrec, read_play_matrix  # noqa: E402
from recsys_assets.core.metrics import evaluate_popularity  # noqa: E402
from recsys_assets.core.models import get_model  # noqa: E402
from recsys_assets.core.split import random_split  # noqa: E402

HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"


def validation_parts(valid_seed: int) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    conn = duckdb.connect()
    load_hetrec(conn, HETREC)
    plays = read_play_matrix(conn)
    train = random_split(plays, test_fraction=0.2, seed=0).train  # the refresh's training part
    inner = random_split(train, test_fraction=0.2, seed=valid_seed)
    return sp.csr_matrix(inner.train), sp.csr_matrix(inner.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--candidates", nargs="+", default=["{}"])
    parser.add_argument("--valid-seed", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    fit_part, valid = validation_parts(args.valid_seed)
    popularity = evaluate_popularity(fit_part, valid, k=10, threads=args.threads).as_dict()
    print(f"popularity p@10 {popularity['precision']:.4f}", flush=True)
    model = get_model(args.model)
    rows = []
    for text in args.candidates:
        overrides = json.loads(text)
        settings = replace(model.settings(), **overrides)
        start = time.perf_counter()
        factors = model.fit(fit_part, settings, threads=args.threads)
        seconds = time.perf_counter() - start
        report = model.evaluate(factors, fit_part, valid, threads=args.threads).as_dict()
        row = {"settings": overrides, "p@10": report["precision"], "map@10": report["map"],
               "auc": report["auc"], "epochs": len(factors.loss), "fit_s": round(seconds, 1)}  # fmt: skip
        rows.append(row)
        print(f"p@10 {row['p@10']:.4f} auc {row['auc']:.3f} epochs {row['epochs']} "
              f"fit {seconds:.1f} s  {text}", flush=True)  # fmt: skip
    print(json.dumps({"model": args.model, "popularity_p@10": popularity["precision"], "rows": rows}))


if __name__ == "__main__":
    main()
