"""Entry point for `dagster dev` / `dagster definitions validate` (see workspace.yaml).

The graph is built from the settings file in force ($RECSYS_CONFIG or ./recsys.toml, else
defaults); data lives under $RECSYS_HOME (default ./recsys_home).
"""

from recsys_assets.definitions import build_definitions

defs = build_definitions()
