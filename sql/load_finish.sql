-- Turn the staging tables of one load into the raw tables (run inside the load's transaction,
-- after raw_schema.sql). Staging, filled by the loader:
--   _stage_users(ucode, user_key)             one row per distinct user key
--   _stage_artists(acode, artist_key, name, mbid)
-- Every staged key gets an id: the loaders stage only keys with a valid play, except load_synthetic,
-- which keeps artists without listeners so that ids equal the generator's indices. Ids are dense,
-- ordered by the key read as an integer where it is one (numeric source ids keep their order), then
-- by the key's text. The loader then maps its per-line (ucode, acode, plays) through _user_map and
-- _artist_map, sums duplicate pairs and inserts `plays` itself (a join and GROUP BY over every line
-- here cost most of a large load).

CREATE OR REPLACE TEMP TABLE _user_map AS
SELECT
    s.ucode,
    (row_number() OVER (ORDER BY try_cast(s.user_key AS HUGEINT) NULLS LAST, s.user_key) - 1)::INTEGER
        AS user_id,
    s.user_key
FROM _stage_users AS s;

CREATE OR REPLACE TEMP TABLE _artist_map AS
SELECT
    s.acode,
    (row_number() OVER (ORDER BY try_cast(s.artist_key AS HUGEINT) NULLS LAST, s.artist_key) - 1)::INTEGER
        AS artist_id,
    s.artist_key,
    s.name,
    s.mbid
FROM _stage_artists AS s;

INSERT INTO users SELECT user_id, user_key FROM _user_map ORDER BY user_id;

INSERT INTO artists SELECT artist_id, artist_key, name, mbid FROM _artist_map ORDER BY artist_id;
