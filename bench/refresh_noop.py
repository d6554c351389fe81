"""Wall time of a no-op `recsys refresh` (target: <= 5 s on the 2-core machine).

Usage: .venv/bin/python bench/refresh_noop.py [--repeat 5] [--home DIR]

Materializes the default graph once into a fresh RECSYS_HOME (unless --home already has it), then
runs `recsys refresh` --repeat times as a user would (a new process each time, imports included)
and reports each wall time. Last line: JSON with median and max seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RECSYS = Path(sys.executable).parent / "recsys"


def run_refresh(env: dict[str, str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run([str(RECSYS), "refresh"], env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - start, result.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--home", type=Path, default=None)
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="recsys_bench_"))
    env = dict(os.environ, RECSYS_HOME=str(home))
    env.pop("RECSYS_CONFIG", None)
    env.pop("DAGSTER_HOME", None)
    seconds, last = run_refresh(env)
    print(f"first refresh: {seconds:.1f} s ({last})")
    times = []
    for i in range(args.repeat):
        seconds, last = run_refresh(env)
        if "nothing to do" not in last:
            sys.exit(f"refresh {i + 1} was not a no-op: {last}")
        times.append(seconds)
        print(f"no-op refresh {i + 1}: {seconds:.2f} s")
    print(
        json.dumps(
            {
                "noop_median_s": round(statistics.median(times), 3),
                "noop_max_s": round(max(times), 3),
                "repeat": args.repeat,
                "load_avg_1m": os.getloadavg()[0],
            }
        )
    )


if __name__ == "__main__":
    main()
