"""Models below the popularity baseline: flagged in red in the report, a warning check that never blocks
publishing, and the exploration section."""

from __future__ import annotations

import dagster as dg
import numpy as np
import scipy.sparse as sp

from recsys_assets.assets.publish import failed_checks
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.report import below_baseline, html_report
from recsys_assets.pipeline.exploration import chosen_artists, explore_factors
from recsys_assets.settings import ExploreSettings


def _rows(values: dict[str, float], k: int = 10) -> list[dict]:
    rows = [{"model": m, "metric": "precision", "k": k, "value": v} for m, v in values.items()]
    return rows + [{"model": m, "metric": "auc", "k": None, "value": 0.5} for m in values]


def test_below_baseline_compares_precision_with_popularity_only():
    rows = _rows({"als": 0.21, "lsa": 0.10, "popularity": 0.15, "random": 0.01})
    assert below_baseline(rows) == {"lsa": (0.10, 0.15)}
    assert below_baseline(_rows({"als": 0.21, "lsa": 0.15})) == {}  # no baseline row: nothing to flag
    assert below_baseline(_rows({"als": 0.15, "popularity": 0.15})) == {}  # equal is not below


def test_report_shows_a_model_below_popularity_in_red():
    page = html_report("t", _rows({"als": 0.21, "lsa": 0.10, "popularity": 0.15}), {}, {}, generated_at="now")
    assert page.count('<tr class="below">') == 1
    red_row = page.split('<tr class="below">')[1].split("</tr>")[0]
    assert "<td>lsa</td>" in red_row
    assert "lsa scores below the popularity baseline on precision: 0.1000 &lt; 0.1500" in page
    fine = html_report("t", _rows({"als": 0.21, "popularity": 0.15}), {}, {}, generated_at="now")
    assert 'class="below"' not in fine.split("<style>")[1].split("</style>")[1]


def test_a_warning_check_does_not_block_publishing():
    @dg.asset(
        check_specs=[dg.AssetCheckSpec("warns", asset="thing"), dg.AssetCheckSpec("errs", asset="thing")]
    )
    def thing() -> dg.MaterializeResult:
        return dg.MaterializeResult(
            check_results=[
                dg.AssetCheckResult(check_name="warns", passed=False, severity=dg.AssetCheckSeverity.WARN),
                dg.AssetCheckResult(check_name="errs", passed=False),
            ]
        )

    instance = dg.DagsterInstance.ephemeral()
    dg.materialize([thing], instance=instance, raise_on_error=False)
    keys = [dg.AssetCheckKey(dg.AssetKey("thing"), name) for name in ("warns", "errs")]
    assert failed_checks(instance, keys) == ["thing:errs"]


def test_exploration_section_without_and_with_chosen_artists():
    rng = np.random.default_rng(0)
    train = sp.random(60, 30, density=0.3, random_state=0, format="csr", dtype=np.float32)
    names = [f"Band {i}" for i in range(30)]
    factors = FactorSet("als", rng.normal(size=(60, 4)), rng.normal(size=(30, 4)))
    settings = ExploreSettings(artists=("band 3", "The Band 5", "Nobody"), tsne_artists=10)
    out = explore_factors([factors], train, names, None, settings, threads=1)
    assert "Not in the catalogue: Nobody" in out.html
    assert set(out.markdown) >= {"dot_vs_cosine_als", "norm_vs_popularity", "cosine_heatmap_als"}
    assert -1.0 <= out.values["norm_popularity_spearman_als"] <= 1.0
    assert list(out.pages) == ["artist_map_als.html"] and "<svg" in out.pages["artist_map_als.html"]
    popularity = np.diff(train.tocsc().indptr).astype(float)
    assert chosen_artists(("band 3", "The Band 5", "Nobody"), names, popularity, 4) == ([3, 5], ["Nobody"])
    assert chosen_artists((), names, popularity, 4)[0] == list(np.lexsort((np.arange(30), -popularity))[:4])
