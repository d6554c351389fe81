"""Evaluation: a held-out split, every enabled model refitted on train, metrics against baselines,
a report."""

import datetime as dt
import time
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.artifact_server import UiSettings, artifact_url
from recsys_assets.assets._common import data_version, markdown_table, reads_settings
from recsys_assets.assets._tables import table_metadata
from recsys_assets.assets.spark import SPARK_MODEL, spark_eval_als_asset
from recsys_assets.core import explore, metrics, report
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import get_model
from recsys_assets.core.split import Split
from recsys_assets.engines.settings import EngineSettings
from recsys_assets.pipeline.evaluation import (
    REPORT_METRICS,
    evaluate_model,
    make_split,
    metric_rows,
    tag_quality_rows,
    value_metric_rows,
    write_evaluation,
)
from recsys_assets.pipeline.exploration import explore_factors
from recsys_assets.pipeline.factors import ensure_finite, fit_model
from recsys_assets.pipeline.matrices import apply_weighting
from recsys_assets.pipeline.tuning import TunedSettings, tuned_input
from recsys_assets.resources import RecsysStore, warehouse_connection
from recsys_assets.settings import (
    DataSettings,
    ExploreSettings,
    RuntimeSettings,
    Settings,
    WeightingSettings,
    check_evaluation_k,
    check_model,
    fingerprint,
)
from recsys_assets.storage import atomic_path, bytes_hash

REPORT_FILE = "evaluation_report.html"


def split_name(split_params: dict) -> str:
    return f"{split_params['split']}-{split_params['test_fraction']:g}"


def dataset_facts(data: DataSettings, split: Split) -> dict[str, object]:
    """What the evaluation measured: the source, and its users, artists and (user, artist) plays."""
    source = data.source if not data.path else f"{data.source}: {data.path}"
    return {
        "source": source,
        "users": int(split.train.shape[0]),
        "artists": int(split.train.shape[1]),
        "plays": int(split.train.nnz + split.test.nnz),
        "train plays": int(split.train.nnz),
        "held-out plays": int(split.test.nnz),
    }


def numeric_metrics(rows: list[dict]) -> dict[str, float]:
    """``<model>/<metric>[@k]`` -> value: numbers the asset page's Plots tab charts across runs."""
    out = {}
    for row in rows:
        name = row["metric"] if row.get("k") is None else f"{row['metric']}@{row['k']}"
        out[f"{row['model']}/{name}"] = float(row["value"])
    return out


@reads_settings("train_test_split-2")
def split_asset(split_params: dict, *, code_version: str) -> dg.AssetsDefinition:
    """``split_params``: :meth:`EvaluationSettings.split_params`."""

    @dg.asset(
        name="train_test_split",
        group_name="evaluation",
        code_version=code_version,
        description=f"Seeded {split_params['split']} split: {split_params['test_fraction']:.0%} held out "
        "for testing.",
    )
    def _split(play_matrix: sp.csr_matrix) -> dg.Output[Split]:
        split = make_split(play_matrix, **split_params)
        return dg.Output(
            split,
            data_version=data_version(split.train, split.test),
            metadata={
                "train_nnz": int(split.train.nnz),
                "test_nnz": int(split.test.nnz),
                "test_users": int(np.sum(np.diff(split.test.indptr) > 0)),
            },
        )

    return _split


@reads_settings("eval_factors-2")
def eval_factor_asset(
    name: str,
    model_settings: Any,
    sources: tuple,
    runtime: RuntimeSettings,
    *,
    engine: EngineSettings | None = None,
    k: int | None = None,
    where: str | None = None,
    code_version: str,
) -> dg.AssetsDefinition:
    """``eval_{name}_factors``: the model refitted on the train matrix. ``sources``: the data and
    weighting the model's input depends on, and the split parameters. ``engine`` only for the model
    Spark can fit (``als``): with kind spark it is refitted on Spark, with Spark's top-``k`` metrics
    ([evaluation] k, passed only then) in its metadata (:mod:`recsys_assets.assets.spark`)."""
    model = get_model(name)
    weighting = next((s for s in sources if isinstance(s, WeightingSettings)), None)
    spec = {
        "name": f"eval_{name}_factors",
        "group_name": "evaluation",
        "kinds": set(model.kinds),
        "code_version": code_version,
        "description": f"{name} refitted on the train matrix with the production settings.",
    }
    if engine is not None and engine.kind == "spark":
        return spark_eval_als_asset(spec, model_settings, sources, weighting, k, engine, where)

    @dg.asset(**spec)
    def _eval(context: dg.AssetExecutionContext, train_test_split: Split) -> dg.Output[FactorSet]:
        train = train_test_split.train
        matrix = apply_weighting(train, weighting) if model.input == "weighted" else train
        check_model(model, model_settings, matrix.shape, where)
        factors = fit_model(
            model, matrix, model_settings, runtime.threads, log=context.log.info, provenance=sources
        )
        ensure_finite(factors)
        return dg.Output(factors, data_version=data_version(factors.user_factors, factors.item_factors))

    return _eval


@reads_settings("eval_tuned_factors-1")
def eval_tuned_factor_asset(
    name: str, sources: tuple, runtime: RuntimeSettings, *, code_version: str
) -> dg.AssetsDefinition:
    """``eval_{name}_factors`` under ``[tuning]``: the settings and weighting ``{name}_tuning`` chose,
    fitted on the train matrix. ``sources``: the data and the split parameters."""
    model = get_model(name)

    @dg.asset(
        name=f"eval_{name}_factors",
        ins={"train_test_split": dg.AssetIn(), "tuned": dg.AssetIn(f"{name}_tuning")},
        group_name="evaluation",
        kinds=set(model.kinds),
        code_version=code_version,
        description=f"{name} refitted on the train matrix with the tuned settings.",
    )
    def _eval(
        context: dg.AssetExecutionContext, train_test_split: Split, tuned: TunedSettings
    ) -> dg.Output[FactorSet]:
        section = tuned.section(model.settings)
        matrix = tuned_input(model, train_test_split.train, tuned)
        check_model(model, section, matrix.shape)
        factors = fit_model(
            model,
            matrix,
            section,
            runtime.threads,
            log=context.log.info,
            provenance=(*sources, tuned.document()),
        )
        ensure_finite(factors)
        return dg.Output(factors, data_version=data_version(factors.user_factors, factors.item_factors))

    return _eval


BEATS_POPULARITY = "models_beat_popularity"


@reads_settings("evaluation_report-5")
def report_asset(
    models: tuple[str, ...],
    transform_sections: tuple,
    k: int,
    data: DataSettings,
    weighting: WeightingSettings,
    split_params: dict,
    explore_settings: ExploreSettings,
    runtime: RuntimeSettings,
    ui: UiSettings,
    *,
    where: str | None = None,
    code_version: str,
) -> dg.AssetsDefinition:
    """``transform_sections``: ``(name, section)`` of each model whose held-out values go through its
    ``value_transform`` (which reads the section); ``k``: [evaluation] k; ``ui``: where ``recsys ui``
    serves the report pages the metadata links to (not in the fingerprint)."""
    sections = dict(transform_sections)
    hetrec = data.source == "hetrec"
    name_of_split = split_name(split_params)
    seed = int(split_params["seed"])
    # What shaped every evaluation number besides the model's own settings.
    provenance = (data, weighting, split_params)

    @dg.asset(
        ins={f"eval_{m}_factors": dg.AssetIn() for m in models} | {"train_test_split": dg.AssetIn()},
        # Only HetRec has user tags to score related artists with; elsewhere the report does not read them.
        deps=["related_artists"] if hetrec else [],
        group_name="evaluation",
        kinds={"duckdb", "html"},
        code_version=code_version,
        check_specs=[
            dg.AssetCheckSpec(
                BEATS_POPULARITY,
                asset="evaluation_report",
                description=f"Every model's held-out precision@{k} is at least the popularity baseline's "
                "(warns; never blocks publishing).",
            )
        ],
        description="Precision, recall, MAP, NDCG, AUC (the full AUC over every non-train artist, not "
        "implicit's top-k estimate), MPR (weighted by the held-out play counts) and coverage per model "
        "(RMSE and MAE of the held-out values for value-predicting models) against popularity and random "
        "baselines (random: exact expectations); each as `<model>/<metric>@k` metadata (Plots tab); "
        "accumulates in the `evaluation` table with the settings fingerprint and split seed; the report "
        "(dataset, provenance, charts) is the `report` entry and an HTML file, linked as `report_url` (served by `recsys ui`).",
    )
    def evaluation_report(
        context: dg.AssetExecutionContext,
        warehouse: DuckDBResource,
        store: RecsysStore,
        train_test_split: Split,
        **inputs,
    ) -> dg.MaterializeResult:
        started = time.perf_counter()
        split = train_test_split
        check_evaluation_k(k, split.train.shape[1], where)
        rows: list[dict] = []
        fitted: list[FactorSet] = [inputs[f"eval_{m}_factors"] for m in models]
        for factors in fitted:
            model = get_model(factors.model)
            result = evaluate_model(
                model, factors, split, k, runtime.threads, runtime.memory_budget_bytes, log=context.log.info
            )
            rows += metric_rows(factors.model, factors.settings_fingerprint, name_of_split, k, result)
            rows += value_metric_rows(model, sections.get(model.name), factors, split.test, name_of_split)
        # Baselines without a score GEMM: popularity ranks everyone by one shared sorted list (exactly the
        # rank-1 model's report); random's metrics are their exact expectations (no sample).
        popularity = metrics.evaluate_popularity(split.train, split.test, k=k, threads=runtime.threads)
        rows += metric_rows(
            "popularity", fingerprint(*provenance, "popularity"), name_of_split, k, popularity
        )
        random = metrics.expected_random(split.train, split.test, k=k)
        rows += metric_rows("random", fingerprint(*provenance, "random-expected"), name_of_split, k, random)
        run_at = dt.datetime.now(dt.UTC).replace(tzinfo=None)
        losses = {f.model: f.loss for f in fitted if f.loss}
        with warehouse_connection(warehouse) as conn:
            names = [
                name if name is not None else f"#{i}"
                for i, name in conn.execute(
                    "SELECT artist_id, name FROM artists ORDER BY artist_id"
                ).fetchall()
            ]
            tags = None
            tag_rows = []
            if hetrec:
                assigned = conn.execute(
                    "SELECT artist_id, tag_id FROM artist_tags WHERE artist_id IS NOT NULL"
                ).fetchnumpy()
                # Tag ids have gaps (HetRec's do): a name slot per id up to the largest.
                tag_names = [""] * (int(assigned["tag_id"].max()) + 1 if len(assigned["tag_id"]) else 0)
                for tag_id, tag in conn.execute("SELECT tag_id, tag FROM tags").fetchall():
                    if tag_id is not None and 0 <= tag_id < len(tag_names):
                        tag_names[tag_id] = tag or ""
                if tag_names:
                    tags = explore.top_tags(assigned["artist_id"], assigned["tag_id"], tag_names, len(names))
                related = conn.execute(
                    "SELECT model, artist_id, rank, related_id FROM related_artists WHERE rank <= ?", [k]
                ).df()
                tag_rows = tag_quality_rows(conn, related, split.train.shape[1], k)
            # Related-artist quality is measured on the production lists (all data), not on the split.
            table_rows = rows + [
                {
                    "model": r["model"],
                    "settings_fingerprint": fingerprint(data, weighting, r["model"]),
                    "split": "all",
                    "metric": "related_tag_similarity",
                    "k": k,
                    "value": r["value"],
                }
                for r in tag_rows
            ]
            table = pd.DataFrame(table_rows).assign(run_at=run_at)
            table["k"] = table["k"].astype("Int64")  # NULL where a metric has no cut-off
            # NULL for numbers measured on all data (no split).
            table["split_seed"] = pd.array(
                [None if s == "all" else seed for s in table["split"]], dtype="Int64"
            )
            extra = {"related-artist tag similarity (top-10)": tag_rows} if tag_rows else {}
            dataset = dataset_facts(data, split)
            explored = explore_factors(fitted, split.train, names, tags, explore_settings, runtime.threads)
            html = report.html_report(
                "recsys evaluation",
                rows,
                losses,
                extra,
                generated_at=run_at.isoformat(" ", "seconds"),
                dataset=dataset,
                split_seed=seed,
                sections={"Exploring the factor space": explored.html},
            ).encode()
            # The rows and the report's hash (the data version) commit together; the report file follows,
            # so a kill in between leaves a file that differs from the ledger and the asset re-runs.
            version = bytes_hash(html)
            write_evaluation(conn, table, version, REPORT_FILE)
            tables = table_metadata(conn, "evaluation")
        html_path = store.artifact_path(REPORT_FILE)
        with atomic_path(html_path) as tmp:
            tmp.write_bytes(html)
        for page, text in explored.pages.items():
            with atomic_path(store.artifact_path(page)) as tmp:
                tmp.write_text(text, encoding="utf-8")
        below = report.below_baseline(rows)
        ranking_rows = [r for r in rows if r["metric"] in REPORT_METRICS]
        charts = {"Ranking metrics by model": report.metrics_chart_png(ranking_rows)}
        if losses:
            charts["Training loss"] = report.loss_curve_png(losses)
        metadata = (
            numeric_metrics(rows + [{**r, "metric": "related_tag_similarity", "k": k} for r in tag_rows])
            | {
                "metrics": dg.MetadataValue.md(report.metrics_markdown(rows)),
                "report": dg.MetadataValue.md(report.report_markdown(rows, dataset, seed, charts)),
                # A link the UI can open: `recsys ui` serves the artifacts over http (a browser does
                # not follow file:// links from the UI's page); the path is for a shell.
                "report_url": dg.MetadataValue.url(artifact_url(ui.artifacts_port, REPORT_FILE)),
                "html_report": dg.MetadataValue.path(str(html_path)),
                "split": name_of_split,
                "split_seed": seed,
                "k": k,
            }
            | {f"dataset/{key.replace(' ', '_')}": v for key, v in dataset.items() if isinstance(v, int)}
            | tables
            | {name: dg.MetadataValue.md(text) for name, text in explored.markdown.items()}
            | explored.values
            | {
                Path(page).stem: dg.MetadataValue.url(artifact_url(ui.artifacts_port, page))
                for page in explored.pages
            }
        )
        if tag_rows:
            metadata["related_tag_similarity"] = markdown_table(tag_rows)
        metadata["seconds"] = round(time.perf_counter() - started, 3)
        context.log.info(f"evaluation written to {html_path}")
        check = dg.AssetCheckResult(
            check_name=BEATS_POPULARITY,
            passed=not below,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "below_popularity": ", ".join(f"{m} ({v:.4f} < {b:.4f})" for m, (v, b) in below.items())
                or "(none)"
            },
        )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(version), metadata=metadata, check_results=[check]
        )

    return evaluation_report


def build_evaluation_assets(settings: Settings) -> list:
    ev, runtime, where = settings.evaluation, settings.runtime, settings.source_file
    split_params = ev.split_params()
    models = settings.models.enabled
    evals = []
    for name in models:
        if settings.tuning.mode != "off":
            evals.append(eval_tuned_factor_asset(name, (settings.data, split_params), runtime))
            continue
        weighted = get_model(name).input == "weighted"
        sources = (settings.data, settings.weighting) if weighted else (settings.data,)
        engine: dict = {}
        if name == SPARK_MODEL:  # the model the engine fits; on Spark its metrics read k too
            engine = {"engine": settings.engine} | ({"k": ev.k} if settings.engine.kind == "spark" else {})
        evals.append(
            eval_factor_asset(
                name, settings.model_settings(name), (*sources, split_params), runtime, where=where, **engine
            )
        )
    return [
        split_asset(split_params),
        *evals,
        report_asset(
            models,
            tuple(
                (m, settings.model_settings(m))
                for m in models
                if get_model(m).predicts_values and get_model(m).value_transform is not None
            ),
            ev.k,
            settings.data,
            settings.weighting,
            split_params,
            settings.explore,
            runtime,
            settings.ui,
            where=where,
        ),
    ]
