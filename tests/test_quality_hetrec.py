"""Quality on real data (HetRec Last.fm-2k, present in CI; skipped elsewhere): our ALS against
implicit's on the same split and weighting, and the issue's targets."""

from __future__ import annotations

import re

import duckdb
import numpy as np
import pytest

from recsys_assets.core.loaders import load_hetrec, read_play_matrix
from recsys_assets.core.metrics import evaluate_factors, popularity_scores
from recsys_assets.core.models import get_model
from recsys_assets.core.split import random_split
from recsys_assets.pipeline.factors import fit_model
from recsys_assets.pipeline.matrices import apply_weighting
from recsys_assets.settings import CPU_COUNT, Settings
from tests.conftest import HETREC_DIR, hetrec_available

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not hetrec_available(), reason=f"HetRec data not found at {HETREC_DIR}"),
]


@pytest.fixture(scope="module")
def hetrec_split():
    conn = duckdb.connect()
    load_hetrec(conn, HETREC_DIR)
    return random_split(read_play_matrix(conn), test_fraction=0.2, seed=0)


def test_default_als_matches_or_beats_implicit_and_meets_targets(hetrec_split):
    implicit_als = pytest.importorskip("implicit.cpu.als")
    from threadpoolctl import threadpool_limits

    settings = Settings()
    als = settings.als
    split = hetrec_split
    W = apply_weighting(split.train, settings.weighting)
    ours = fit_model(get_model("als"), W, als, threads=2)
    ours_report = evaluate_factors(ours.user_factors, ours.item_factors, split.train, split.test, k=10)

    with threadpool_limits(1, "blas"):
        peer = implicit_als.AlternatingLeastSquares(
            factors=als.factors,
            regularization=als.regularization,
            alpha=als.alpha,
            iterations=als.iterations,
            random_state=als.seed,
            num_threads=2,
            calculate_training_loss=False,
        )
        peer.fit(W, show_progress=False)
    peer_report = evaluate_factors(peer.user_factors, peer.item_factors, split.train, split.test, k=10)

    n_users = split.train.shape[0]
    popularity = evaluate_factors(
        np.ones((n_users, 1), np.float32),
        popularity_scores(split.train)[:, None],
        split.train,
        split.test,
        k=10,
    )
    # The peer on the same split, weighting and settings (issue 3: p@10 >= implicit's - 0.005).
    assert ours_report.precision >= peer_report.precision - 0.005, (ours_report, peer_report)
    # Issue 5's targets, measured with implicit's own ALS + BM25 in shared/PERF-NOTES.md.
    assert ours_report.precision >= 0.165
    assert ours_report.mpr <= 0.067
    # Sanity: popularity lands near its known p@10 (0.078) and far below the model.
    assert 0.06 <= popularity.precision <= 0.095
    assert popularity.mpr > ours_report.mpr


def test_graph_on_hetrec_gives_related_acts_of_the_same_tags(tmp_path, monkeypatch, capsys):
    """The whole graph on HetRec, then `recsys related "Coldplay"`: the answers carry Coldplay's tags."""
    import dagster as dg

    from recsys_assets.catalog import Catalog
    from recsys_assets.cli import main
    from recsys_assets.definitions import build_definitions
    from recsys_assets.refresh import refresh

    settings = Settings().replace(
        data={"source": "hetrec", "path": str(HETREC_DIR)}, runtime={"threads": min(2, CPU_COUNT)}
    )
    home = tmp_path / "home"
    refresh(build_definitions(settings, home), dg.DagsterInstance.ephemeral(), log=lambda _: None)
    monkeypatch.setenv("RECSYS_HOME", str(home))
    assert main(["related", "coldplay", "-n", "10"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    related = [re.split(r"\s{2,}", line.strip())[1] for line in lines[1:]]
    assert len(related) == 10 and "Coldplay" not in related
    with Catalog(home).connect() as conn:
        # The tags users gave Coldplay most often, and the share of related acts tagged with any of them.
        top_tags = {
            r[0]
            for r in conn.execute(
                """SELECT t.tag FROM artist_tags x JOIN artists a USING (artist_id) JOIN tags t USING (tag_id)
                   WHERE a.name = 'Coldplay' GROUP BY t.tag ORDER BY count(*) DESC LIMIT 5"""
            ).fetchall()
        }
        tagged = conn.execute(
            """SELECT count(DISTINCT a.name) FROM artist_tags x JOIN artists a USING (artist_id)
               JOIN tags t USING (tag_id) WHERE a.name IN (SELECT unnest(?)) AND t.tag IN (SELECT unnest(?))""",
            [related, sorted(top_tags)],
        ).fetchone()[0]
        quality = conn.execute(
            "SELECT count(*) FROM evaluation WHERE metric = 'related_tag_similarity'"
        ).fetchone()[0]
    assert {"alternative", "rock"} & top_tags
    assert tagged >= 8, (related, top_tags)
    assert quality >= 3  # als, lsa and the popularity baseline
