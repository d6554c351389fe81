"""Tuned HetRec figures as a user gets them: ``recsys refresh`` with ``[tuning]`` on (issue 12's targets).

Usage: NUMBA_NUM_THREADS=2 .venv/bin/python bench/tune_refresh.py [--mode auto] [--orientation O] [--keep DIR]

Writes a settings file into a fresh ``$RECSYS_HOME``: ``[data] source = "hetrec"`` (the data folder beside
the checkout, ``../shared/data/hetrec2011-lastfm-2k``), ``[evaluation] split = "random"`` (implicit's 80/20
split, seed 0), ``[tuning] mode`` and ``[runtime] threads = 2`` and no model setting. ``--orientation``
also writes ``[weighting] orientation``: written explicitly, it is held fixed, so the tuner must do its
best with everything else (``user_artist`` is the opposite of the default, ``artist_user`` the default
made unchangeable). Runs ``recsys refresh`` as a
new process and reads from the published catalog the held-out p@10 of every model and of the popularity
baseline (``evaluation``), and each model's chosen candidate (``tuning``); the seconds of every tuning
asset come from the Dagster event log (step start to success). Checks the targets: tuned ALS p@10 >= 0.225,
LSA >= 0.215, the ALS tuning asset <= 120 s, no enabled model below popularity. ``--synthetic``: the
synthetic default data with every data and evaluation setting at its default (only the popularity check
applies). Last line JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import step_windows  # noqa: E402  (bench/pipeline.py)

RECSYS = Path(sys.executable).parent / "recsys"
HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"
TARGETS = {"als": 0.225, "lsa": 0.215}
ALS_TUNING_SECONDS = 120.0


def step_seconds(dagster_home: Path) -> dict[str, float]:
    """Seconds per asset step (start to success, summed over every run of the instance), slowest first."""
    windows = step_windows(dagster_home, since=0.0)
    seconds = {key: sum(end - start for start, end in spans) for key, spans in windows.items()}
    return {k: round(v, 2) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=HETREC)
    parser.add_argument("--mode", default="auto", choices=["auto", "grid", "halving"])
    parser.add_argument(
        "--orientation",
        choices=["artist_user", "user_artist"],
        help="write [weighting] orientation (held fixed by the tuner: a forced starting point)",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="the synthetic default data (every [data] and [evaluation] setting at its default) instead",
    )
    parser.add_argument("--keep", type=Path, help="use this folder as the work folder (else a temporary one)")
    args = parser.parse_args()
    if not args.synthetic and not (args.data / "user_artists.dat").is_file():
        sys.exit(f"{args.data} has no user_artists.dat: pass --data <HetRec folder>")
    work = args.keep or Path(tempfile.mkdtemp(prefix="recsys_tune_refresh_"))
    home = work / "home"
    if home.exists() and any(home.iterdir()):
        sys.exit(f"{home} is not empty: the bench needs a fresh RECSYS_HOME")
    home.mkdir(parents=True, exist_ok=True)
    config = work / "recsys.toml"
    text = f'[tuning]\nmode = "{args.mode}"\n\n[runtime]\nthreads = 2\n'
    if not args.synthetic:
        text += (
            f'\n[data]\nsource = "hetrec"\npath = "{args.data.resolve()}"\n\n[evaluation]\nsplit = "random"\n'
        )

    if args.orientation:
        text += f'\n[weighting]\norientation = "{args.orientation}"\n'
    config.write_text(text)
    env = dict(os.environ, RECSYS_HOME=str(home), RECSYS_CONFIG=str(config))
    env.pop("DAGSTER_HOME", None)
    load = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.run([str(RECSYS), "refresh"], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    (work / "refresh.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print((proc.stdout + proc.stderr)[-3000:])
        sys.exit(f"recsys refresh failed (rc {proc.returncode}); log in {work / 'refresh.log'}")

    from recsys_assets.catalog import Catalog

    conn = Catalog(home).connect()
    p10 = dict(
        conn.execute(
            "SELECT model, value FROM evaluation WHERE metric = 'precision' AND k = 10 "
            "QUALIFY row_number() OVER (PARTITION BY model ORDER BY run_at DESC) = 1"
        ).fetchall()
    )
    chosen = {
        model: {"weighting": weighting, "settings": json.loads(settings), "validation_p10": round(value, 4)}
        for model, weighting, settings, value in conn.execute(
            "SELECT model, weighting, settings, value FROM tuning WHERE chosen"
        ).fetchall()
    }
    fits = dict(conn.execute("SELECT model, count(*) FROM tuning GROUP BY model").fetchall())
    seconds = step_seconds(home / "dagster")
    models = sorted(chosen)
    popularity = p10.get("popularity")
    out = {
        "data": "synthetic default" if args.synthetic else "hetrec",
        "mode": args.mode,
        "orientation_forced": args.orientation,
        "refresh_seconds": round(wall, 1),
        "load_before": [round(x, 2) for x in load],
        "popularity_p10": None if popularity is None else round(popularity, 4),
        "p10": {m: round(p10[m], 4) for m in models},
        "tuning_seconds": {m: seconds.get(f"{m}_tuning") for m in models},
        "fits": fits,
        "chosen": chosen,
    }
    out["checks"] = {
        "none_below_popularity": popularity is not None and all(p10[m] >= popularity for m in models)
    }
    if not args.synthetic:  # the p@10 and seconds targets are HetRec's
        out["checks"] |= {f"{m}_p10>={t}": p10.get(m, 0.0) >= t for m, t in TARGETS.items()}
        out["checks"][f"als_tuning<={ALS_TUNING_SECONDS:g}s"] = (
            seconds.get("als_tuning") or 1e9
        ) <= ALS_TUNING_SECONDS
    print(json.dumps(out))


if __name__ == "__main__":
    main()
