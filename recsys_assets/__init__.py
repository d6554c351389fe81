"""recsys: an implicit-feedback music recommender built as a Dagster asset graph.

``recsys_assets.core`` holds the pure numerical and loading code and the model registry (no Dagster
import); ``recsys_assets.pipeline`` adapts settings to the core and writes the warehouse (no Dagster
import either); ``recsys_assets.assets`` and ``recsys_assets.definitions`` wire it into Dagster.
"""

__version__ = "0.1.0"
