-- Output tables of the recsys pipeline (DuckDB warehouse; published read-only as views in recsys.duckdb).
-- Each model's rows are replaced as a whole when that model's asset materializes.

-- Latent factors of every artist and user, per model, with the settings fingerprint that made them.
CREATE TABLE IF NOT EXISTS artist_factors (
    model VARCHAR NOT NULL,
    settings_fingerprint VARCHAR NOT NULL,
    artist_id INTEGER NOT NULL,
    factors FLOAT[] NOT NULL
);

CREATE TABLE IF NOT EXISTS user_factors (
    model VARCHAR NOT NULL,
    settings_fingerprint VARCHAR NOT NULL,
    user_id INTEGER NOT NULL,
    factors FLOAT[] NOT NULL
);

-- "People who like artist_id also like related_id": top-N per artist per model (rank 1 = closest).
CREATE TABLE IF NOT EXISTS related_artists (
    model VARCHAR NOT NULL,
    artist_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    related_id INTEGER NOT NULL,
    score REAL NOT NULL
);

-- Top-N artists per user per model, artists the user already played removed.
CREATE TABLE IF NOT EXISTS recommendations (
    model VARCHAR NOT NULL,
    user_id INTEGER NOT NULL,
    rank INTEGER NOT NULL,
    artist_id INTEGER NOT NULL,
    score REAL NOT NULL
);

-- Candidate duplicate artists: near-identical factors, far fewer shared listeners than such similar
-- artists usually share. score = -log P(Poisson(expected_shared) <= shared_listeners).
CREATE TABLE IF NOT EXISTS artist_aliases (
    model VARCHAR NOT NULL,
    artist_id INTEGER NOT NULL,
    alias_id INTEGER NOT NULL,
    factor_similarity REAL NOT NULL,
    listener_similarity REAL NOT NULL,
    shared_listeners INTEGER NOT NULL,
    artist_listeners INTEGER NOT NULL,
    alias_listeners INTEGER NOT NULL,
    expected_shared REAL NOT NULL,
    score REAL NOT NULL
);

-- Held-out evaluation, accumulated across runs.
CREATE TABLE IF NOT EXISTS evaluation (
    run_at TIMESTAMP NOT NULL,
    model VARCHAR NOT NULL,
    settings_fingerprint VARCHAR NOT NULL,
    split VARCHAR NOT NULL,
    metric VARCHAR NOT NULL,
    k INTEGER,
    value DOUBLE NOT NULL,
    split_seed BIGINT
);
-- Warehouses made before the column existed get it (NULL for their earlier rows).
ALTER TABLE evaluation ADD COLUMN IF NOT EXISTS split_seed BIGINT;

-- Tuning searches ([tuning] mode != "off"): one row per fitted candidate per model, scored on a validation
-- split carved from the evaluation's training part. settings: the swept values as fitted (JSON); the
-- chosen row's choice holds the whole chosen section and weighting (JSON) that the production fit read.
CREATE TABLE IF NOT EXISTS tuning (
    model VARCHAR NOT NULL,
    weighting VARCHAR NOT NULL,
    settings VARCHAR NOT NULL,
    objective VARCHAR NOT NULL,
    value DOUBLE,
    val_precision DOUBLE,
    val_recall DOUBLE,
    val_map DOUBLE,
    val_ndcg DOUBLE,
    val_auc DOUBLE,
    val_mpr DOUBLE,
    seconds DOUBLE NOT NULL,
    users INTEGER NOT NULL,
    rung INTEGER NOT NULL,
    chosen BOOLEAN NOT NULL,
    choice VARCHAR,
    stopped BOOLEAN
);
-- stopped: [tuning] budget_seconds ended that model's search before every planned fit (the best so far
-- was kept). Warehouses made before the column existed get it (NULL for their earlier rows).
ALTER TABLE tuning ADD COLUMN IF NOT EXISTS stopped BOOLEAN;

-- Internal: the data version of each asset's latest warehouse write (NULL while a write is in progress)
-- and the artifact files written with it (JSON: name -> content hash). Written in the same transaction as
-- the asset's tables, so `recsys refresh` can tell a write whose run was killed before Dagster recorded it.
CREATE TABLE IF NOT EXISTS _asset_versions (
    asset VARCHAR PRIMARY KEY,
    data_version VARCHAR,
    files VARCHAR NOT NULL,
    written_at TIMESTAMP NOT NULL
);
