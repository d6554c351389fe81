-- Raw tables written by recsys_assets.core.loaders. A load replaces the data tables in one
-- transaction; load_log keeps one row per successful load across loads.

-- Dense user ids 0..n-1, ordered by key (numerically where the key is an integer); key = original id.
CREATE OR REPLACE TABLE users (
    user_id INTEGER PRIMARY KEY,
    user_key VARCHAR NOT NULL
);

-- Dense artist ids 0..m-1, same ordering rule. For Last.fm-360K the key is the artist name as written
-- ("The Arcade Fire" and "Arcade Fire" are two artists, as in the dataset); mbid where known.
CREATE OR REPLACE TABLE artists (
    artist_id INTEGER PRIMARY KEY,
    artist_key VARCHAR NOT NULL,
    name VARCHAR,
    mbid VARCHAR
);

-- One row per (user, artist); duplicate lines in the source are summed.
CREATE OR REPLACE TABLE plays (
    user_id INTEGER NOT NULL,
    artist_id INTEGER NOT NULL,
    plays DOUBLE NOT NULL
);

-- Every line of the source that was not loaded, with its 1-based line number and why.
CREATE OR REPLACE TABLE rejects (
    source_file VARCHAR,
    line_number BIGINT,
    reason VARCHAR,
    raw_line VARCHAR
);

-- HetRec only (empty for other sources): tag names and who tagged which artist with what.
CREATE OR REPLACE TABLE tags (
    tag_id INTEGER,
    tag VARCHAR
);

CREATE OR REPLACE TABLE artist_tags (
    user_id INTEGER,
    artist_id INTEGER,
    tag_id INTEGER
);

CREATE TABLE IF NOT EXISTS load_log (
    loaded_at TIMESTAMP,
    source VARCHAR,
    source_file VARCHAR,
    lines_read BIGINT,
    rows_loaded BIGINT,
    rows_rejected BIGINT,
    duplicates_merged BIGINT,
    n_users BIGINT,
    n_artists BIGINT,
    n_plays BIGINT
);
