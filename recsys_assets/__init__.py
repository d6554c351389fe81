"""recsys: an implicit-feedback music recommender built as a Dagster asset graph.

``recsys_assets.core`` holds the pure numerical and loading code (no Dagster import);
``recsys_assets.assets`` and ``recsys_assets.definitions`` wire it into Dagster.
"""

__version__ = "0.1.0"
