"""The product's own inputs at Last.fm-360K scale, made once and cached as files under /tmp.

The play matrix is the one ``bench/make_lastfm_tsv.py`` writes as a TSV (``generate_plays`` with the
same arguments: 360K users x 300K artists, 49 artists per user, the generator's default genres and
planted aliases; only the artist/user numbering differs from an ingest of that TSV, which changes no
neighbour set). The factors are fitted exactly as the refresh fits them, with the default settings:
the default weighting (``apply_weighting``), ALS on ``alpha * weighted`` (``fit_als_factors``) and LSA
on the weighted matrix (``fit_lsa_factors``).

    .venv/bin/python bench/product_factors.py          # writes (or reuses) the cache, prints the paths

Other benchmarks import :func:`product_inputs`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from recsys_assets.core.models import get_model  # noqa: E402
from recsys_assets.core.synthetic import generate_plays  # noqa: E402
from recsys_assets.pipeline.factors import fit_model  # noqa: E402
from recsys_assets.pipeline.matrices import apply_weighting  # noqa: E402
from recsys_assets.settings import Settings, fingerprint  # noqa: E402

FULL = (360_000, 300_000, 49.0)
SMALL = (20_000, 20_000, 50.0)


def _cache_stem(users: int, artists: int, per_user: float, settings: Settings) -> str:
    key = fingerprint(settings.weighting, settings.als, settings.lsa)
    return f"/tmp/recsys_product_{users}x{artists}x{per_user:g}_{key}"


def product_inputs(
    users: int, artists: int, per_user: float, threads: int, settings: Settings | None = None
) -> tuple[sp.csr_matrix, dict[str, np.ndarray]]:
    """The (users, artists) play matrix and the item factors {"als": (artists, 32), "lsa": (artists, 64)}
    fitted with ``settings`` (default: the product's defaults), from the /tmp cache when present."""
    settings = settings or Settings()
    stem = _cache_stem(users, artists, per_user, settings)
    plays_path = Path(f"{stem}_plays.npz")
    factor_paths = {m: Path(f"{stem}_{m}_items.npy") for m in ("als", "lsa")}
    if plays_path.exists() and all(p.exists() for p in factor_paths.values()):
        print(f"inputs: cached {stem}_*")
        return sp.load_npz(plays_path).tocsr(), {m: np.load(p) for m, p in factor_paths.items()}
    t = time.perf_counter()
    plays = generate_plays(n_users=users, n_artists=artists, artists_per_user=per_user, seed=0).to_csr()
    print(f"generated {users} x {artists}, {plays.nnz} plays in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    weighted = apply_weighting(plays, settings.weighting)
    print(f"weighted ({settings.weighting.scheme}) in {time.perf_counter() - t:.1f} s", flush=True)
    t = time.perf_counter()
    als = fit_model(get_model("als"), weighted, settings.als, threads)
    print(
        f"ALS {settings.als.factors} factors x {settings.als.iterations} iterations in "
        f"{time.perf_counter() - t:.1f} s",
        flush=True,
    )
    t = time.perf_counter()
    lsa = fit_model(get_model("lsa"), weighted, settings.lsa, threads)
    print(f"LSA {settings.lsa.factors} factors in {time.perf_counter() - t:.1f} s", flush=True)
    factors = {"als": als.item_factors, "lsa": lsa.item_factors}
    for model, path in factor_paths.items():
        np.save(path, factors[model])
    sp.save_npz(plays_path, plays, compressed=False)
    return plays, factors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="20K users x 20K artists")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    users, artists, per_user = SMALL if args.small else FULL
    plays, factors = product_inputs(users, artists, per_user, args.threads)
    print(json.dumps({"plays_nnz": int(plays.nnz)} | {m: list(f.shape) for m, f in factors.items()}))


if __name__ == "__main__":
    main()
