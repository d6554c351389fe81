"""Write a Last.fm-360K-format TSV (user-sha1, artist-mbid, artist-name, plays; no header) from the
synthetic generator, for ingest benchmarks.

    .venv/bin/python bench/make_lastfm_tsv.py --out /tmp/lastfm_synth.tsv [--users 360000 --artists 300000]

Users get sha1-looking keys, about two thirds of artists an mbid-looking UUID (the rest an empty
field, as in the dataset), artists their generated names. Lines are written by DuckDB's COPY.
Prints what it wrote and ends with one JSON line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
import uuid
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from recsys_assets.core.synthetic import generate_plays


def write_lastfm_tsv(out: Path, n_users: int, n_artists: int, artists_per_user: float, seed: int) -> dict:
    """Generate plays and write them as a Last.fm-360K TSV; returns counts and timings."""
    t0 = time.perf_counter()
    syn = generate_plays(n_users=n_users, n_artists=n_artists, artists_per_user=artists_per_user, seed=seed)
    t_gen = time.perf_counter() - t0
    rng = np.random.default_rng(seed + 1)
    user_keys = [hashlib.sha1(f"synthetic-user-{i}".encode()).hexdigest() for i in range(n_users)]
    has_mbid = rng.random(n_artists) < 2 / 3
    bits = rng.integers(0, 2**63, size=(n_artists, 2), dtype=np.int64).tolist()
    mbids = [
        str(uuid.UUID(int=(hi << 64) | lo)) if m else "" for (hi, lo), m in zip(bits, has_mbid, strict=True)
    ]
    plays = pd.DataFrame({"u": syn.user_index, "a": syn.artist_index, "p": syn.plays})
    users = pd.DataFrame({"u": np.arange(n_users, dtype=np.int32), "key": pd.Series(user_keys, dtype=object)})
    artists = pd.DataFrame(
        {
            "a": np.arange(n_artists, dtype=np.int32),
            "mbid": pd.Series(mbids, dtype=object),
            "name": pd.Series(syn.artist_names, dtype=object),
        }
    )
    conn = duckdb.connect()
    conn.register("plays_df", plays)
    conn.register("users_df", users)
    conn.register("artists_df", artists)
    out.parent.mkdir(parents=True, exist_ok=True)
    target = str(out).replace("'", "''")
    conn.execute(
        "COPY (SELECT u.key, a.mbid, a.name, p.p FROM plays_df p JOIN users_df u USING (u) "
        f"JOIN artists_df a USING (a) ORDER BY u.key, a.name) TO '{target}' "
        "(FORMAT csv, DELIMITER '\t', HEADER false, QUOTE '', ESCAPE '')"
    )
    conn.close()
    return {
        "path": str(out),
        "lines": syn.nnz,
        "bytes": out.stat().st_size,
        "n_users": n_users,
        "n_artists": n_artists,
        "generate_s": round(t_gen, 2),
        "total_s": round(time.perf_counter() - t0, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("/tmp/lastfm_synth.tsv"))
    parser.add_argument("--users", type=int, default=360_000)
    parser.add_argument("--artists", type=int, default=300_000)
    parser.add_argument("--artists-per-user", type=float, default=49.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    result = write_lastfm_tsv(args.out, args.users, args.artists, args.artists_per_user, args.seed)
    print(f"wrote {result['lines']:,} lines, {result['bytes'] / 1e9:.2f} GB to {result['path']}")
    print(f"generate {result['generate_s']} s, total {result['total_s']} s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
