"""Tuned settings as data: the search on the training part of the evaluation split, the settings it
chooses (what the production and evaluation fits read), the ``tuning`` table, and reading the choice
back from the published catalog (the CLI's fold-in and explanations use the settings the factors were
fitted with)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys_assets.core.models import Model
from recsys_assets.core.split import Split
from recsys_assets.core.tuning import TuningResult, TuningSettings, WeightingChoice, tune_split
from recsys_assets.pipeline.matrices import apply_weighting
from recsys_assets.settings import WeightingSettings
from recsys_assets.storage import record_version

# Columns of the ``tuning`` table after model / weighting / settings / objective / value.
VALIDATION_METRICS = ("precision", "recall", "map", "ndcg", "auc", "mpr")


@dataclass(frozen=True)
class TunedSettings:
    """The settings a tuning search chose for one model, as canonical JSON bytes (uint8 array, so the
    artifact's content hash covers them): ``{"model", "settings": full section, "weighting": WeightingChoice
    fields or null for a model of the play counts}``."""

    payload: np.ndarray

    @classmethod
    def of(cls, model: str, settings: Any, weighting: WeightingChoice | None) -> TunedSettings:
        document = {
            "model": model,
            "settings": dataclasses.asdict(settings),
            "weighting": None if weighting is None else dataclasses.asdict(weighting),
        }
        text = json.dumps(document, sort_keys=True, separators=(",", ":"))
        return cls(np.frombuffer(text.encode(), dtype=np.uint8).copy())

    def document(self) -> dict[str, Any]:
        return json.loads(np.asarray(self.payload, dtype=np.uint8).tobytes().decode())

    def section(self, section_type: type) -> Any:
        """The chosen ``[model]`` section (validated again by the section's own rules)."""
        return section_type(**self.document()["settings"])

    def weighting(self) -> WeightingChoice | None:
        chosen = self.document()["weighting"]
        return None if chosen is None else WeightingChoice(**chosen)


def user_weighting(weighting: WeightingSettings) -> WeightingChoice:
    """The ``[weighting]`` table as the tuner's starting weighting."""
    epsilon = weighting.epsilon if weighting.scheme == "log" else weighting.confidence_epsilon
    return WeightingChoice(weighting.scheme, weighting.orientation, weighting.k1, weighting.b, epsilon)


def run_tuning(
    model: Model,
    split: Split,
    section: Any,
    weighting: WeightingSettings,
    tuning: TuningSettings,
    fixed: frozenset[str],
    threads: int,
    log: Callable[[str], None] | None = None,
) -> tuple[TuningResult, TunedSettings]:
    """Search ``model``'s settings on a validation split of ``split.train`` only (the test part is never
    read), starting from the user's ``section`` and ``weighting``, never changing what ``fixed`` names
    (:meth:`~recsys_assets.settings.Settings.fixed_for`)."""

    def progress(row: dict[str, Any]) -> None:
        if log is not None:
            log(
                f"{model.name} {row['weighting']} {row['settings']}: {row['objective']:.4f} ({row['seconds']:.1f} s, rung {row['rung']}, {row['users']} users)"
            )

    result = tune_split(
        split,
        model,
        section,
        base_weighting=user_weighting(weighting),
        fixed=fixed,
        threads=threads,
        progress=progress,
        **tuning.search_arguments(),
    )
    chosen_weighting = result.chosen_weighting if model.input == "weighted" else None
    return result, TunedSettings.of(model.name, result.chosen_settings, chosen_weighting)


def tuned_input(model: Model, plays: sp.csr_matrix, tuned: TunedSettings) -> sp.csr_matrix:
    """The matrix ``model`` is fitted on under the tuned settings: the chosen weighting of ``plays``, or
    ``plays`` itself for a model of the play counts."""
    weighting = tuned.weighting()
    return plays if model.input == "plays" or weighting is None else weighting.apply(plays)


def tuning_frame(result: TuningResult, tuned: TunedSettings) -> pd.DataFrame:
    """Rows of the ``tuning`` table: one per fitted candidate, ``settings`` (the swept values as fitted)
    as JSON; the chosen row also holds ``choice``, the whole :class:`TunedSettings` JSON."""
    choice = np.asarray(tuned.payload, dtype=np.uint8).tobytes().decode()
    rows = []
    for row in result.table():
        rows.append(
            {
                "model": row["model"],
                "weighting": row["weighting"],
                "settings": json.dumps(row["settings"], sort_keys=True),
                "objective": row["objective"],
                "value": row["value"],
                **{f"val_{m}": row.get(f"val_{m}") for m in VALIDATION_METRICS},
                "seconds": row["seconds"],
                "users": row["users"],
                "rung": row["rung"],
                "chosen": row["chosen"],
                "choice": choice if row["chosen"] else None,
                "stopped": row["stopped"],
            }
        )
    return pd.DataFrame(rows)


def write_tuning_table(conn: Any, model: str, frame: pd.DataFrame, version: str) -> None:
    """Replace ``model``'s rows of ``tuning`` and record the asset's data ``version``, in one transaction."""
    conn.register("tuning_rows", frame)
    conn.execute("BEGIN TRANSACTION")
    conn.execute("DELETE FROM tuning WHERE model = ?", [model])
    conn.execute("INSERT INTO tuning BY NAME SELECT * FROM tuning_rows")
    record_version(conn, f"{model}_tuning", version)
    conn.execute("COMMIT")
    conn.unregister("tuning_rows")


def clear_tuning_table(conn: Any) -> None:
    """With ``[tuning] mode = "off"`` no model is tuned: no stale rows of an earlier tuning stay behind."""
    conn.execute("DELETE FROM tuning")


def production_settings(
    section: Any, weighting: WeightingSettings, tuned: TunedSettings | None
) -> tuple[Any, WeightingChoice | None]:
    """The model settings and weighting the published factors were fitted with: the tuned ones when
    ``tuned`` is given, else the settings file's section and None (= as ``[weighting]`` says)."""
    if tuned is not None:
        return tuned.section(type(section)), tuned.weighting()
    return section, None


def published_choice(conn: Any, model: str) -> TunedSettings | None:
    """The tuned settings of ``model`` in a published catalog (None when it was not tuned)."""
    views = {
        name for (name,) in conn.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    }
    if "tuning" not in views:  # a catalog published before tuning existed
        return None
    found = conn.execute("SELECT choice FROM tuning WHERE model = ? AND chosen", [model]).fetchall()
    return TunedSettings(np.frombuffer(found[0][0].encode(), dtype=np.uint8).copy()) if found else None


def weighted_input(
    plays: sp.csr_matrix, weighting: WeightingSettings, choice: WeightingChoice | None
) -> sp.csr_matrix:
    """The full weighted matrix under ``choice`` (tuned), or as ``[weighting]`` says when tuning is off."""
    if choice is None:
        return apply_weighting(plays, weighting)
    return choice.apply(plays)
