"""The whole graph at Last.fm-360K scale, run the way a user runs it.

    .venv/bin/python bench/pipeline.py [--tsv /tmp/lastfm_synth.tsv] [--users 360000 --artists 300000]
                                       [--work DIR] [--keep]

Writes (or reuses) the Last.fm-format TSV of ``bench/make_lastfm_tsv.py``, copies it into a fresh work
folder, points a fresh ``$RECSYS_HOME`` at it with ``[data] source = "lastfm360k"`` and every other setting
at its default, and measures, each as a new ``recsys refresh`` process:

1. the first refresh from an empty home: wall time, seconds per asset (from the Dagster event log) and the
   peak RSS of the whole process tree (sampled from ``/proc`` every 0.1 s; DuckDB's memory counts, it lives
   in the same process);
2. a no-op refresh;
3. a refresh after changing ``[recommend] n``, then one after changing ``[als] factors``;
4. a refresh after appending 1 % new lines (new listeners of existing artists) to the TSV.

Prints a table and ends with one JSON line: ``published`` (true only when the first refresh published a
generation), ``total_s``, ``peak_rss_gib``, ``noop_s``, ``per_asset_s``, ``recommend_change_s``,
``als_change_s``, ``append_s`` (and the per-asset seconds and peak RSS of every later step).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg

RECSYS = Path(sys.executable).parent / "recsys"
BENCH = Path(__file__).resolve().parent
PAGE = os.sysconf("SC_PAGE_SIZE")


def _tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:
            continue
        # The command name may hold spaces or parentheses: the fields after the last ')' are fixed.
        fields = stat[stat.rfind(b")") + 2 :].split()
        parents[int(entry.name)] = int(fields[1])
    tree, frontier = {root}, [root]
    while frontier:
        pid = frontier.pop()
        for child, parent in parents.items():
            if parent == pid and child not in tree:
                tree.add(child)
                frontier.append(child)
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * PAGE
        except OSError:
            continue
    return total


def run_refresh(env: dict[str, str], label: str) -> dict:
    """One ``recsys refresh`` in a new process: wall time, exit status, last line, peak tree RSS, and the
    RSS samples (wall-clock time, bytes) for attributing peaks to assets."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [str(RECSYS), "refresh"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    samples: list[tuple[float, int]] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            samples.append((time.time(), _tree_rss(proc.pid)))
            done.wait(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output = proc.communicate()[0]
    done.set()
    sampler.join()
    seconds = time.perf_counter() - start
    peak = max((rss for _, rss in samples), default=0)
    lines = output.strip().splitlines()
    log = Path(env["RECSYS_HOME"]) / f"bench_{label}.log"
    log.write_text(output)
    return {
        "label": label,
        "seconds": round(seconds, 2),
        "rc": proc.returncode,
        "last_line": lines[-1] if lines else "",
        "peak_rss_gib": round(peak / 2**30, 3),
        "samples": samples,
    }


def step_windows(dagster_home: Path, since: float) -> dict[str, list[tuple[float, float]]]:
    """(start, end) wall-clock times of each asset step of the runs that started after ``since``."""
    os.environ["DAGSTER_HOME"] = str(dagster_home)
    out: dict[str, list[tuple[float, float]]] = {}
    with dg.DagsterInstance.get() as instance:
        for run in instance.get_runs():
            record = instance.get_run_record_by_id(run.run_id)
            if record is None or record.create_timestamp.timestamp() < since:
                continue
            starts: dict[str, float] = {}
            for entry in instance.all_logs(
                run.run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS}
            ):
                key = entry.step_key
                if entry.dagster_event.event_type == dg.DagsterEventType.STEP_START:
                    starts[key] = entry.timestamp
                elif key in starts:
                    out.setdefault(key, []).append((starts[key], entry.timestamp))
    return out


def attribute_steps(windows: dict[str, list[tuple[float, float]]], samples: list[tuple[float, int]]) -> tuple:
    """Seconds per asset (slowest first) and the peak tree RSS (GiB) sampled while each asset ran."""
    seconds = {k: round(sum(e - s for s, e in w), 2) for k, w in windows.items()}
    peaks = {
        k: round(max((r for t, r in samples if any(s <= t <= e for s, e in w)), default=0) / 2**30, 2)
        for k, w in windows.items()
    }
    return dict(sorted(seconds.items(), key=lambda kv: -kv[1])), peaks


def write_settings(path: Path, tsv: Path, extra: str = "") -> None:
    path.write_text(f'[data]\nsource = "lastfm360k"\npath = "{tsv}"\n{extra}')


def append_lines(tsv: Path, fraction: float, seed: int = 0) -> int:
    """Append ``fraction`` x the file's lines as plays of new listeners (about 49 artists each, taken
    from the file's own lines, so every artist already exists); returns the number of lines added."""
    import numpy as np

    with open(tsv, "rb") as handle:
        n_lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 24), b""))
    wanted = int(n_lines * fraction)
    artists: list[bytes] = []
    with open(tsv, "rb") as handle:
        for i, line in enumerate(handle):
            if i % 97 == 0:
                fields = line.rstrip(b"\n").split(b"\t")
                artists.append(b"\t".join(fields[1:3]))
            if len(artists) >= 200_000:
                break
    rng = np.random.default_rng(seed)
    written = 0
    with open(tsv, "ab") as handle:
        user = 0
        while written < wanted:
            key = hashlib.sha1(f"appended-user-{seed}-{user}".encode()).hexdigest().encode()
            picks = rng.choice(len(artists), size=min(49, wanted - written), replace=False)
            plays = rng.integers(1, 500, size=picks.size)
            handle.write(
                b"".join(key + b"\t" + artists[a] + b"\t%d\n" % p for a, p in zip(picks, plays, strict=True))
            )
            written += picks.size
            user += 1
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tsv", type=Path, default=Path("/tmp/lastfm_synth.tsv"))
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--work", type=Path, default=None, help="work folder (default: a new temp folder)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    args = parser.parse_args()

    if not args.tsv.is_file():
        print(f"writing {args.tsv} ...", flush=True)
        subprocess.run(
            [
                sys.executable,
                str(BENCH / "make_lastfm_tsv.py"),
                "--out",
                str(args.tsv),
                "--users",
                str(args.users),
                "--artists",
                str(args.artists),
            ],
            check=True,
        )
    work = args.work or Path(tempfile.mkdtemp(prefix="recsys_pipeline_"))
    work.mkdir(parents=True, exist_ok=True)
    tsv = work / "plays.tsv"  # a copy: the append step must not touch the shared input
    shutil.copyfile(args.tsv, tsv)
    home, config = work / "home", work / "recsys.toml"
    if home.exists():
        shutil.rmtree(home)
    home.mkdir()
    write_settings(config, tsv)
    env = dict(os.environ, RECSYS_HOME=str(home), RECSYS_CONFIG=str(config))
    env.pop("DAGSTER_HOME", None)
    dagster_home = home / "dagster"

    steps: list[tuple[str, dict, dict]] = []
    peaks: dict[str, dict[str, float]] = {}

    def measure(label: str) -> dict:
        since = time.time()
        result = run_refresh(env, label)
        windows = step_windows(dagster_home, since) if dagster_home.exists() else {}
        seconds, peaks[label] = attribute_steps(windows, result.pop("samples"))
        steps.append((label, result, seconds))
        print(
            f"{label:<18} {result['seconds']:>8.1f} s  rc {result['rc']}  peak RSS {result['peak_rss_gib']:.2f} GiB"
            f"  | {result['last_line']}",
            flush=True,
        )
        return result

    load_before = os.getloadavg()
    first = measure("first")
    first_assets = steps[-1][2]
    published = first["rc"] == 0 and "published_catalog" in first_assets
    noop = measure("noop")
    write_settings(config, tsv, "\n[recommend]\nn = 25\n")
    recommend = measure("recommend_n")
    write_settings(config, tsv, "\n[recommend]\nn = 25\n\n[als]\nfactors = 40\n")
    als = measure("als_factors")
    added = append_lines(tsv, 0.01)
    print(f"appended {added:,} lines", flush=True)
    append = measure("append_1pct")

    print("\nseconds and peak RSS per asset (first refresh):")
    for key, seconds in first_assets.items():
        print(f"  {key:<28} {seconds:>8.1f} s  {peaks['first'][key]:>6.2f} GiB")
    for label, _, per_asset in steps[2:]:
        ran = ", ".join(f"{k} {v:.1f}" for k, v in per_asset.items())
        print(f"{label}: {ran or 'nothing'}")
    summary = {
        "published": published,
        "total_s": first["seconds"],
        "peak_rss_gib": first["peak_rss_gib"],
        "noop_s": noop["seconds"],
        "per_asset_s": first_assets,
        "per_asset_peak_rss_gib": peaks["first"],
        "recommend_change_s": recommend["seconds"],
        "als_change_s": als["seconds"],
        "append_s": append["seconds"],
        "append_lines": added,
        "later_steps": {
            label: {
                "seconds": r["seconds"],
                "rc": r["rc"],
                "peak_rss_gib": r["peak_rss_gib"],
                "per_asset_s": pa,
            }
            for label, r, pa in steps[1:]
        },
        "load_avg_1m_before": round(load_before[0], 2),
        "load_avg_1m_after": round(os.getloadavg()[0], 2),
        "cpus": os.cpu_count(),
    }
    if not args.keep and args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
