"""Tuning: per enabled model, the settings chosen by a search on the training part of the evaluation
split (only when ``[tuning] mode`` is not "off"). The chosen settings are the asset's output, versioned
by their content: a new best re-fits the model and what follows, the same best stops the cascade."""

import base64
from typing import Any

import dagster as dg
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import data_version, markdown_table, reads_settings
from recsys_assets.core.models import get_model
from recsys_assets.core.split import Split
from recsys_assets.core.tuning import TuningSettings
from recsys_assets.core.tuning_plots import tuning_heatmaps
from recsys_assets.pipeline.tuning import TunedSettings, run_tuning, tuning_frame, write_tuning_table
from recsys_assets.resources import warehouse_connection
from recsys_assets.settings import RuntimeSettings, Settings, WeightingSettings, check_model


@reads_settings("tuning-1")
def tuning_asset(
    name: str,
    model_settings: Any,
    weighting: WeightingSettings,
    tuning: TuningSettings,
    fixed: tuple[str, ...],
    runtime: RuntimeSettings,
    *,
    where: str | None = None,
    code_version: str,
) -> dg.AssetsDefinition:
    """The ``{name}_tuning`` asset: searches from ``model_settings`` and ``weighting``, never changing
    what ``fixed`` names (the keys the settings file writes explicitly)."""
    model = get_model(name)

    @dg.asset(
        name=f"{name}_tuning",
        group_name="tuning",
        kinds={*model.kinds, "duckdb"},
        code_version=code_version,
        description=f"{name} settings (and weighting) chosen by a {tuning.mode} search for the best validation "
        f"{tuning.objective}@{tuning.k} on a split of the training part only; rows in the `tuning` table.",
    )
    def _tuning(
        context: dg.AssetExecutionContext, train_test_split: Split, warehouse: DuckDBResource
    ) -> dg.Output[TunedSettings]:
        check_model(model, model_settings, train_test_split.train.shape, where)
        result, tuned = run_tuning(
            model,
            train_test_split,
            model_settings,
            weighting,
            tuning,
            frozenset(fixed),
            runtime.threads,
            log=context.log.info,
        )
        version = data_version(tuned.payload)
        with warehouse_connection(warehouse) as conn:
            write_tuning_table(conn, name, tuning_frame(result, tuned), version.value)
        chosen = result.chosen_row
        metadata: dict[str, Any] = {
            "method": result.method,
            "objective": f"{result.objective}@{tuning.k}",
            "chosen_value": float(chosen["objective"]),
            "chosen_weighting": chosen["weighting"],
            "chosen_settings": dg.MetadataValue.json(tuned.document()["settings"]),
            "fixed": ", ".join(sorted(fixed)) or "(none)",
            "candidates_fitted": len(result.rows),
            "seconds": round(result.seconds, 2),
            "search_size": f"{result.search_users} users x {result.search_items} artists",
            "stopped_by_budget": result.stopped,
            "candidates": markdown_table(
                [
                    {"weighting": r["weighting"], **r["settings"], result.objective: r["objective"]}
                    for r in result.rows
                ]
            ),
        }
        for (x, y), png in tuning_heatmaps(result).items():
            image = base64.b64encode(png).decode()
            metadata[f"heatmap_{x}_{y}"] = dg.MetadataValue.md(f"![{x} x {y}](data:image/png;base64,{image})")
        return dg.Output(tuned, data_version=version, metadata=metadata)

    return _tuning


def build_tuning_assets(settings: Settings) -> list:
    if settings.tuning.mode == "off":
        return []
    return [
        tuning_asset(
            model.name,
            settings.model_settings(model.name),
            settings.weighting,
            settings.tuning,
            tuple(sorted(settings.fixed_for(model.name))),
            settings.runtime,
            where=settings.source_file,
        )
        for model in settings.enabled_models()
    ]
