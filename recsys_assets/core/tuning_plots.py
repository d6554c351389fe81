"""Charts of a tuning search: one heatmap per pair of swept settings, the chosen point outlined."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from recsys_assets.core.report import _figure, _png
from recsys_assets.core.tuning import TuningResult

__all__ = ["tuning_heatmaps"]


def tuning_heatmaps(result: TuningResult) -> dict[tuple[str, str], bytes]:
    """One PNG heatmap per pair of swept settings: cell = the best objective over the other settings.

    Uses the rows of the first rung, where every candidate was fitted at one resource level (all rows of
    a grid or random search; the user sample of halving's first rung), so cells are comparable; axes
    list the values in sorted order (weighting labels in grid order, always on the y axis); the chosen
    point is outlined. Returns ``{(x_name, y_name): png bytes}``; empty when fewer than two settings
    were swept.
    """
    rows = [r for r in result.rows if r["rung"] == 0 and math.isfinite(r["objective"])]

    def value_of(row: dict[str, Any], name: str) -> Any:
        return row["weighting"] if name == "weighting" else row["point"][name]

    out: dict[tuple[str, str], bytes] = {}
    for x_name, y_name in itertools.combinations(result.swept, 2):
        xs = _axis(rows, x_name, value_of)
        ys = _axis(rows, y_name, value_of)
        cells = np.full((len(ys), len(xs)), np.nan)
        for row in rows:
            i, j = ys.index(value_of(row, y_name)), xs.index(value_of(row, x_name))
            v = row["objective"]
            better = np.isnan(cells[i, j]) or (
                v > cells[i, j] if result.higher_is_better else v < cells[i, j]
            )
            if better:
                cells[i, j] = v
        width = 2.8 + 0.9 * len(xs) + (2.2 if y_name == "weighting" else 0.0)
        fig = _figure(figsize=(width, 1.6 + 0.5 * len(ys)), dpi=110, layout="constrained")
        ax = fig.add_subplot()
        image = ax.imshow(cells, cmap="viridis" if result.higher_is_better else "viridis_r", aspect="auto")
        low = np.nanmin(cells)
        span = max(float(np.nanmax(cells) - low), 1e-12)
        for i, j in itertools.product(range(len(ys)), range(len(xs))):
            if np.isfinite(cells[i, j]):
                bright = (
                    (cells[i, j] - low) / span > 0.6
                    if result.higher_is_better
                    else (cells[i, j] - low) / span < 0.4
                )
                ax.text(
                    j,
                    i,
                    f"{cells[i, j]:.3f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="black" if bright else "white",
                )
        ci, cj = ys.index(value_of(result.chosen_row, y_name)), xs.index(value_of(result.chosen_row, x_name))
        ax.add_patch(_rectangle(cj, ci))
        ax.set_xticks(
            range(len(xs)),
            [_label(v) for v in xs],
            fontsize=7,
        )
        ax.set_yticks(range(len(ys)), [_label(v) for v in ys], fontsize=7)
        ax.set_xlabel(_axis_name(result, x_name))
        ax.set_ylabel(_axis_name(result, y_name))
        ax.set_title(
            f"{result.model}: validation {result.objective}\n(best over the other settings; chosen outlined)",
            fontsize=8,
        )
        fig.colorbar(image, ax=ax)
        out[x_name, y_name] = _png(fig)
    return out


def _axis(rows: list[dict[str, Any]], name: str, value_of: Callable[[dict[str, Any], str], Any]) -> list[Any]:
    values = list(dict.fromkeys(value_of(row, name) for row in rows))
    return values if name == "weighting" else sorted(values)


def _axis_name(result: TuningResult, name: str) -> str:
    relative = any(isinstance(v, tuple) for n, v in result.chosen_row["candidate"].values if n == name)
    return f"{name} x mean weighted value" if relative else name


def _label(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _rectangle(x: int, y: int) -> Any:
    from matplotlib.patches import Rectangle

    return Rectangle((x - 0.5, y - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=2.5)
