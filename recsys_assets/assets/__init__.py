"""Dagster assets, one module per pipeline stage; each builds its assets from the settings."""
