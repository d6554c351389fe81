"""The Dagster-free layer between :mod:`recsys_assets.core` and :mod:`recsys_assets.assets`.

Settings-to-core adapters (weighting, fitting a registered model, splits, indexes, answers,
evaluation rows) and the warehouse writers. Asset modules are wiring only: a decorator, the inputs,
a call into this package, and metadata for the UI. Nothing here imports Dagster.
"""
