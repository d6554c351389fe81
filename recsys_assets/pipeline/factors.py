"""Fitting a registered model: its input matrix, the fit with provenance, the finiteness guard and a
summary for people."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp

from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.models import Model
from recsys_assets.core.report import loss_curve_png
from recsys_assets.pipeline.warehouse import markdown_rows
from recsys_assets.progress import Progress
from recsys_assets.settings import fingerprint


class NonFiniteFactorsError(ArithmeticError):
    """A fit produced NaN or infinite factors; nothing was written or published."""


def fit_model(
    model: Model,
    matrix: sp.csr_matrix,
    settings: Any,
    threads: int,
    log: Callable[[str], None] | None = None,
    provenance: tuple = (),
) -> FactorSet:
    """Fit ``model`` with its ``settings`` section on ``matrix`` (the model's input: weighted matrix or
    play counts), logging each iteration through ``log``.

    ``provenance``: the other settings that shaped the input (data, weighting, split), fingerprinted
    with ``settings`` into the set's ``settings_fingerprint``.
    """

    # A live bar on a terminal (nothing elsewhere); every iteration's line goes to ``log``.
    with Progress(f"{model.name} fit", unit="iterations", display="auto") as bar:
        live = bar.fit_callback()

        def progress(step: int, total: int, loss: float | None, seconds: float) -> None:
            live(step, total, loss, seconds)
            if log is not None:
                shown = "" if loss is None else f": loss {loss:.6g}"
                log(f"{model.name} iteration {step}/{total}{shown}, {seconds:.2f} s")

        factors = model.fit(matrix, settings, threads=threads, progress=progress)
    factors.model = model.name
    factors.settings_fingerprint = fingerprint(*provenance, settings)
    return factors


def ensure_finite(factors: FactorSet) -> None:
    """Raise :class:`NonFiniteFactorsError`, with the count per matrix, when any factor is NaN or infinite.

    This is the guard, not an asset check: Dagster records a materialization (and its stored output)
    before a check runs, so a check could only report non-finite factors that were already written.
    """
    counts = factors.non_finite_counts()
    if any(counts.values()):
        shapes = {"user_factors": factors.user_factors.shape, "item_factors": factors.item_factors.shape}
        detail = ", ".join(f"{n:,} of {np.prod(shapes[name]):,} {name}" for name, n in counts.items() if n)
        raise NonFiniteFactorsError(
            f"{factors.model} produced non-finite factors ({detail} are NaN or infinite): nothing was "
            "written or published; check the model settings (e.g. regularization, alpha)"
        )


def _png_markdown(title: str, png: bytes) -> str:
    return f"![{title}](data:image/png;base64,{base64.b64encode(png).decode()})"


def factor_summary(factors: FactorSet) -> tuple[dict[str, Any], dict[str, str]]:
    """What a person reads about a factor set: plain values, and markdown texts (the loss per
    iteration with its curve, named loss components and other curves, where the model has them)."""
    norms = np.linalg.norm(factors.item_factors, axis=1)
    values: dict[str, Any] = {
        "model": factors.model,
        "settings_fingerprint": factors.settings_fingerprint,
        "factors": int(factors.item_factors.shape[1]),
        "users": int(factors.user_factors.shape[0]),
        "artists": int(factors.item_factors.shape[0]),
        "zero_artist_vectors": int(np.sum(norms == 0)),
    }
    texts: dict[str, str] = {}
    if factors.loss:
        values["final_loss"] = float(factors.loss[-1])
        seconds = factors.seconds or [float("nan")] * len(factors.loss)
        values["seconds_per_iteration"] = float(np.median(seconds))
        texts["loss_per_iteration"] = markdown_rows(
            [
                {"iteration": i + 1, "loss": float(loss), "seconds": float(s)}
                for i, (loss, s) in enumerate(zip(factors.loss, seconds, strict=True))
            ],
            floats="{:.6g}",
        )
        texts["loss_curve"] = _png_markdown("loss curve", loss_curve_png({factors.model: factors.loss}))
    for name, series in factors.loss_components.items():
        if series:
            values[f"final_{name}"] = float(series[-1])
    if factors.loss_components and any(factors.loss_components.values()):
        series = {name: list(s) for name, s in factors.loss_components.items() if s}
        texts["loss_components"] = _png_markdown("loss components", loss_curve_png(series))
    for name, curve in factors.curves.items():
        rows = [{"x": float(x), "y": float(y)} for x, y in zip(curve["x"], curve["y"], strict=True)]
        texts[f"curve_{name}"] = markdown_rows(rows, floats="{:.6g}")
    return values, texts
