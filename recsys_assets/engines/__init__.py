"""Engines that run the heavy stages: ``local`` (numba + DuckDB, the default) and ``spark``.

Dagster-free: the asset layer chooses the engine from the ``[engine]`` settings table
(:class:`~recsys_assets.engines.settings.EngineSettings`) and calls into :mod:`recsys_assets.engines.spark`
for the Spark stages.
"""
