"""Pure core: loaders, weighting, splitting, ALS, LSA, ANN, metrics. No Dagster import here."""
