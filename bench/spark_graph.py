"""The whole graph through ``recsys refresh`` with ``[engine] kind = "spark"``, against the local engine.

    flock /work/heavy.lock timeout 1500 .venv/bin/python bench/spark_graph.py
    .venv/bin/python bench/spark_graph.py --datasets hetrec --engines local,spark-local

For each data set (``hetrec``: ``[data] source = "hetrec"`` with ``[evaluation] split = "random"``, the
folder ``../shared/data/hetrec2011-lastfm-2k`` next to the repository; ``synthetic``: the default data,
3000 users x 4000 artists) and each engine (``local``: the numba/DuckDB engine, the reference;
``spark-local``: ``master = "local[2]"``; ``spark-cluster``: a standalone cluster started on localhost with
``recsys_assets.engines.standalone``, one master and two workers of one core each), makes a fresh
``$RECSYS_HOME`` with its own settings file and runs ``recsys refresh`` as a new process. Per run it records
the exit status, the wall seconds, the seconds per asset (STEP_START to STEP_SUCCESS in the Dagster event
log), whether a catalog generation was published, ALS p@10 and MPR from the published ``evaluation``
table, Spark's own p@10 of its evaluation fit (``eval_als_factors`` metadata ``spark_precision``), and
the number of recommendations (every model) that are artists the user already played (SQL against the
published catalog; must be 0). Spark's ALS p@10 is compared with the local engine's on the same data and
split (issue 15: within 0.01 on HetRec).

Prints one line per run and ends with one JSON object: ``runs`` (every run), ``p_at_10_delta`` per
data set and Spark engine, ``all_published``, ``no_played_recommended``, ``hetrec_within_0_01`` and the
load average before and after.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's package

import dagster as dg  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from pipeline import step_windows  # noqa: E402  (bench/pipeline.py)

from recsys_assets.catalog import Catalog  # noqa: E402
from recsys_assets.engines.standalone import standalone_cluster  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
HETREC = Path(__file__).resolve().parents[2] / "shared" / "data" / "hetrec2011-lastfm-2k"
DATASETS = {
    "hetrec": f'[data]\nsource = "hetrec"\npath = "{HETREC}"\n\n[evaluation]\nsplit = "random"\n',
    "synthetic": "",  # the defaults: 3000 users x 4000 artists
}
ENGINES = ("local", "spark-local", "spark-cluster")
# Executor heap on the localhost cluster: within each worker's 1 GiB, leaving room for the Python worker.
EXECUTOR_MEMORY = "768m"


def engine_table(engine: str, master: str | None) -> str:
    if engine == "local":
        return ""
    if engine == "spark-local":
        return '\n[engine]\nkind = "spark"\nmaster = "local[2]"\n'
    return (
        f'\n[engine]\nkind = "spark"\nmaster = "{master}"\n'
        f'conf = {{ "spark.executor.memory" = "{EXECUTOR_MEMORY}" }}\n'
    )


def step_seconds(dagster_home: Path) -> dict[str, float]:
    """Seconds per asset step (start to success, summed over every run of the instance), slowest first."""
    windows = step_windows(dagster_home, since=0.0)
    seconds = {key: sum(end - start for start, end in spans) for key, spans in windows.items()}
    return {k: round(v, 2) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}


def spark_precision(dagster_home: Path) -> float | None:
    """Spark's own p@k of its evaluation fit (``eval_als_factors`` metadata), or None (local engine)."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("eval_als_factors"))
    if event is None:
        return None
    value = event.asset_materialization.metadata.get("spark_precision")
    return None if value is None else round(float(value.value), 4)


def catalog_facts(home: Path) -> dict:
    """From the published catalog: ALS p@k and MPR, recommendation rows, and recommended artists the
    user already played (every model)."""
    catalog = Catalog(home)
    if catalog.current_generation() is None:
        return {"published": False}
    with catalog.connect() as conn:
        metrics = dict(
            conn.execute(
                "SELECT metric, value FROM evaluation WHERE model = 'als' AND metric IN ('precision', 'mpr') "
                "AND run_at = (SELECT max(run_at) FROM evaluation WHERE model = 'als')"
            ).fetchall()
        )
        k = conn.execute(
            "SELECT max(k) FROM evaluation WHERE model = 'als' AND metric = 'precision'"
        ).fetchone()[0]
        rows, users = conn.execute(
            "SELECT count(*), count(DISTINCT user_id) FROM recommendations WHERE model = 'als'"
        ).fetchone()
        played = conn.execute(
            "SELECT count(*) FROM recommendations r JOIN plays p USING (user_id, artist_id)"
        ).fetchone()[0]
        n_users = conn.execute("SELECT count(DISTINCT user_id) FROM plays").fetchone()[0]
    return {
        "published": True,
        "generation": catalog.current_generation().name,
        "k": k,
        "als_precision": round(metrics["precision"], 4) if "precision" in metrics else None,
        "als_mpr": round(metrics["mpr"], 4) if "mpr" in metrics else None,
        "als_recommendation_rows": rows,
        "als_users_with_recommendations": users,
        "users": n_users,
        "played_recommended": played,
    }


def run_one(work: Path, dataset: str, engine: str, master: str | None, timeout: float) -> dict:
    """A fresh home and settings file for ``dataset`` x ``engine``, one ``recsys refresh``, its facts."""
    home = work / f"{dataset}-{engine}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    config = home.parent / f"{dataset}-{engine}.toml"
    config.write_text(DATASETS[dataset] + engine_table(engine, master))
    # `recsys refresh` of this checkout (the same as the `recsys` script, whichever tree it was installed from).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = dict(os.environ, RECSYS_HOME=str(home), RECSYS_CONFIG=str(config), PYTHONPATH=path)
    env.pop("DAGSTER_HOME", None)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "recsys_assets.cli", "refresh"],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=work,
        )
        rc, output = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        rc, output = 124, f"{exc.stdout or ''}{exc.stderr or ''}\ntimed out after {timeout:.0f} s"
    seconds = time.perf_counter() - start
    (work / f"{dataset}-{engine}.log").write_text(output)
    # The refresh's own summary ("materialized N asset(s) ...", or "recsys: <cause>"), not Dagster's log.
    lines = [
        line for line in output.splitlines() if line.startswith(("materialized ", "nothing ", "recsys:"))
    ]
    lines = lines or [line for line in output.strip().splitlines() if line.strip()]
    dagster_home = home / "dagster"
    result = {
        "dataset": dataset,
        "engine": engine,
        "master": master or ("local[2]" if engine == "spark-local" else None),
        "rc": rc,
        "seconds": round(seconds, 2),
        "last_line": lines[-1] if lines else "",
        "per_asset_s": step_seconds(dagster_home) if dagster_home.is_dir() else {},
        "spark_precision": spark_precision(dagster_home) if dagster_home.is_dir() else None,
    }
    result |= catalog_facts(home)
    result["published"] = result["published"] and rc == 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="hetrec,synthetic", help="comma-separated: hetrec, synthetic")
    parser.add_argument("--engines", default=",".join(ENGINES), help=f"comma-separated: {', '.join(ENGINES)}")
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the homes and logs")
    parser.add_argument("--timeout", type=float, default=600, help="seconds allowed per refresh")
    args = parser.parse_args()
    datasets = [d for d in args.datasets.split(",") if d]
    engines = [e for e in args.engines.split(",") if e]
    for name, known in ((datasets, DATASETS), (engines, ENGINES)):
        unknown = set(name) - set(known)
        if unknown:
            parser.error(f"unknown {sorted(unknown)}; choose from {', '.join(known)}")
    if "hetrec" in datasets and not (HETREC / "user_artists.dat").is_file():
        parser.error(f"HetRec data not found at {HETREC}")

    work = args.work or Path(tempfile.mkdtemp(prefix="recsys_spark_graph_"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    runs: list[dict] = []
    with contextlib.ExitStack() as stack:
        master = None
        cluster_start = None
        if "spark-cluster" in engines:
            t = time.perf_counter()
            cluster = stack.enter_context(
                standalone_cluster(workers=2, cores=1, memory="1g", log_dir=work / "cluster")
            )
            cluster_start = round(time.perf_counter() - t, 2)
            master = cluster.master
            print(f"standalone cluster {master} up in {cluster_start} s (2 workers x 1 core)", flush=True)
        for dataset in datasets:
            for engine in engines:
                result = run_one(
                    work, dataset, engine, master if engine == "spark-cluster" else None, args.timeout
                )
                runs.append(result)
                print(
                    f"{dataset:<9} {engine:<13} rc {result['rc']} {result['seconds']:>7.1f} s  "
                    f"published {result['published']}  p@10 {result.get('als_precision')}  "
                    f"MPR {result.get('als_mpr')}  spark p@10 {result['spark_precision']}  "
                    f"played recommended {result.get('played_recommended')}  | {result['last_line']}",
                    flush=True,
                )

    deltas: dict[str, dict[str, float | None]] = {}
    for dataset in datasets:
        by_engine = {r["engine"]: r for r in runs if r["dataset"] == dataset}
        reference = by_engine.get("local", {}).get("als_precision")
        deltas[dataset] = {
            engine: (
                round(r["als_precision"] - reference, 4)
                if reference is not None and r.get("als_precision") is not None
                else None
            )
            for engine, r in by_engine.items()
            if engine != "local"
        }
    hetrec = [d for d in deltas.get("hetrec", {}).values()]
    summary = {
        "runs": runs,
        "cluster_start_s": cluster_start,
        "p_at_10_delta": deltas,
        "all_published": all(r["published"] for r in runs),
        "no_played_recommended": all(r.get("played_recommended") == 0 for r in runs),
        "hetrec_within_0_01": (all(d is not None and abs(d) <= 0.01 for d in hetrec) if hetrec else None),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
        "work": str(work) if args.keep or args.work else None,
    }
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
