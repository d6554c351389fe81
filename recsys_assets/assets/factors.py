"""Factor sets: implicit ALS and LSA over the weighted matrix, as artifacts and DuckDB tables."""

import base64

import dagster as dg
import numpy as np
import pandas as pd
import scipy.sparse as sp
from dagster_duckdb import DuckDBResource

from recsys_assets.assets._common import code_version, data_version, markdown_table
from recsys_assets.core.als import fit_als
from recsys_assets.core.factorset import FactorSet
from recsys_assets.core.lsa import fit_lsa
from recsys_assets.core.report import loss_curve_png
from recsys_assets.resources import warehouse_connection
from recsys_assets.settings import AlsSettings, LsaSettings, Settings, check_lsa_factors, fingerprint
from recsys_assets.storage import record_version

FACTOR_TABLES = ("artist_factors", "user_factors")
MODELS = ("als", "lsa")


class NonFiniteFactorsError(ArithmeticError):
    """A fit produced NaN or infinite factors; nothing was written or published."""


def fit_als_factors(
    weighted: sp.csr_matrix,
    als: AlsSettings,
    threads: int,
    log=None,
    model: str = "als",
    provenance: tuple = (),
) -> FactorSet:
    """ALS on ``alpha * weighted`` (confidence of observed pairs), logging the loss per iteration.

    ``provenance``: the other settings that shaped the input (data, weighting, split), fingerprinted
    with ``als`` into the set's ``settings_fingerprint``.
    """

    def progress(iteration: int, loss: float | None, seconds: float) -> None:
        if log is not None:
            log.info(f"{model} iteration {iteration + 1}/{als.iterations}: loss {loss:.6g}, {seconds:.2f} s")

    result = fit_als(
        (weighted * np.float32(als.alpha)).tocsr(),
        factors=als.factors,
        regularization=als.regularization,
        iterations=als.iterations,
        solver=als.solver,
        cg_steps=als.cg_steps,
        seed=als.seed,
        threads=threads,
        callback=progress,
    )
    return FactorSet(
        model=model,
        user_factors=result.user_factors,
        item_factors=result.item_factors,
        settings_fingerprint=fingerprint(*provenance, als),
        loss=[float(v) for v in result.loss],
        seconds=[float(v) for v in result.seconds],
    )


def fit_lsa_factors(
    weighted: sp.csr_matrix, lsa: LsaSettings, threads: int, model: str = "lsa", provenance: tuple = ()
) -> FactorSet:
    """Truncated SVD of the weighted matrix as a factor set (``provenance`` as in :func:`fit_als_factors`)."""
    result = fit_lsa(weighted, factors=lsa.factors, seed=lsa.seed, threads=threads)
    return FactorSet(
        model=model,
        user_factors=result.user_factors,
        item_factors=result.item_factors,
        settings_fingerprint=fingerprint(*provenance, lsa),
    )


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


def write_factor_tables(conn, factors: FactorSet, version: str) -> None:
    """Replace this model's rows of ``artist_factors`` / ``user_factors`` and record ``version`` (the
    asset's data version) in the version ledger, in one transaction."""
    frames = {
        "artist_factors": ("artist_id", factors.item_factors),
        "user_factors": ("user_id", factors.user_factors),
    }
    conn.execute("BEGIN TRANSACTION")
    for table, (id_column, matrix) in frames.items():
        # One column per factor is columnar end to end; DuckDB packs them into FLOAT[] itself.
        frame = pd.DataFrame(matrix, columns=[f"f{j}" for j in range(matrix.shape[1])])
        frame.insert(0, id_column, np.arange(matrix.shape[0], dtype=np.int32))
        vector = ", ".join(frame.columns[1:])
        conn.register("factor_frame", frame)
        conn.execute(f"DELETE FROM {table} WHERE model = ?", [factors.model])
        conn.execute(
            f"INSERT INTO {table} SELECT ?, ?, {id_column}, [{vector}]::FLOAT[] FROM factor_frame",
            [factors.model, factors.settings_fingerprint],
        )
        conn.unregister("factor_frame")
    record_version(conn, f"{factors.model}_factors", version)
    conn.execute("COMMIT")


def factor_metadata(factors: FactorSet) -> dict:
    norms = np.linalg.norm(factors.item_factors, axis=1)
    metadata: dict = {
        "model": factors.model,
        "settings_fingerprint": factors.settings_fingerprint,
        "factors": int(factors.item_factors.shape[1]),
        "users": int(factors.user_factors.shape[0]),
        "artists": int(factors.item_factors.shape[0]),
        "zero_artist_vectors": int(np.sum(norms == 0)),
    }
    if factors.loss:
        metadata["final_loss"] = factors.loss[-1]
        metadata["seconds_per_iteration"] = float(np.median(factors.seconds))
        metadata["loss_per_iteration"] = markdown_table(
            [
                {"iteration": i + 1, "loss": loss, "seconds": s}
                for i, (loss, s) in enumerate(zip(factors.loss, factors.seconds, strict=True))
            ],
            floats="{:.6g}",
        )
        png = loss_curve_png({factors.model: factors.loss})
        metadata["loss_curve"] = dg.MetadataValue.md(
            f"![loss curve](data:image/png;base64,{base64.b64encode(png).decode()})"
        )
    return metadata


def factor_output(factors: FactorSet, warehouse: DuckDBResource) -> dg.Output:
    """Validate a fitted factor set, write its DuckDB tables, and wrap it as the asset's output with a
    content-hash data version (validation first: non-finite factors never reach the tables). The tables
    carry that version in the ledger, so a run killed before its output is recorded is detected."""
    ensure_finite(factors)
    version = data_version(factors.user_factors, factors.item_factors)
    with warehouse_connection(warehouse) as conn:
        write_factor_tables(conn, factors, version.value)
    return dg.Output(factors, data_version=version, metadata=factor_metadata(factors))


def build_factor_assets(settings: Settings) -> list:
    threads = settings.runtime.threads
    als, lsa = settings.als, settings.lsa
    provenance = (settings.data, settings.weighting)

    @dg.asset(
        group_name="factors",
        kinds={"numba", "duckdb"},
        code_version=code_version("als_factors-1", als),
        description="Implicit ALS (Hu, Koren & Volinsky 2008; conjugate-gradient solver of Takacs et al. "
        "2011) on alpha x the weighted matrix. Also in DuckDB: artist_factors / user_factors.",
    )
    def als_factors(
        context: dg.AssetExecutionContext,
        weighted_matrix: sp.csr_matrix,
        warehouse: DuckDBResource,
    ) -> dg.Output[FactorSet]:
        return factor_output(
            fit_als_factors(weighted_matrix, als, threads, log=context.log, provenance=provenance), warehouse
        )

    @dg.asset(
        group_name="factors",
        kinds={"scipy", "duckdb"},
        code_version=code_version("lsa_factors-1", lsa),
        description="LSA: truncated SVD of the weighted matrix (users = U, artists = V diag(s)). "
        "Also in DuckDB: artist_factors / user_factors.",
    )
    def lsa_factors(weighted_matrix: sp.csr_matrix, warehouse: DuckDBResource) -> dg.Output[FactorSet]:
        check_lsa_factors(settings, weighted_matrix.shape)
        return factor_output(fit_lsa_factors(weighted_matrix, lsa, threads, provenance=provenance), warehouse)

    return [als_factors, lsa_factors]
