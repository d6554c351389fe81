-- Stage a Parquet triples file for load_finish.sql. Placeholders filled by the loader (quoted
-- identifiers / literals): {path}, {user}, {item}, {value}, {name} (the item name column, or NULL),
-- {max_plays}, {min_plays}, {min_value}, {max_field_bytes}. The loader has checked that the value
-- column has a numeric type. Row numbers are 1-based and play the role of line numbers in `rejects`.
-- Same rules as the text loaders: empty keys, keys or names with ASCII control characters (TAB
-- allowed) or over {max_field_bytes} bytes, and non-finite, zero, negative and out-of-range values are
-- rejected. Valid rows below {min_value} are not positives: they are counted as loaded but staged for
-- no play, and keys with no positive are not staged.
CREATE OR REPLACE TEMP TABLE _parquet_rows AS
SELECT
    file_row_number + 1 AS line_number,
    CAST({user} AS VARCHAR) AS user_key,
    CAST({item} AS VARCHAR) AS artist_key,
    CAST({name} AS VARCHAR) AS item_name,
    CAST({value} AS VARCHAR) AS value_text,
    TRY_CAST({value} AS DOUBLE) AS plays,
    CASE
        WHEN user_key IS NULL OR trim(user_key) = '' THEN 'empty user'
        WHEN artist_key IS NULL OR trim(artist_key) = '' THEN 'empty artist'
        WHEN regexp_matches(user_key || artist_key || coalesce(item_name, ''), '[\x00-\x08\x0A-\x1F\x7F]')
            THEN 'control character'
        WHEN strlen(user_key) > {max_field_bytes} OR strlen(artist_key) > {max_field_bytes}
            OR strlen(coalesce(item_name, '')) > {max_field_bytes}
            THEN 'field too long'
        WHEN value_text IS NULL THEN 'empty plays'
        WHEN plays IS NULL THEN 'non-numeric plays'
        WHEN isnan(plays) OR isinf(plays) THEN 'non-finite plays'
        WHEN plays = 0 THEN 'zero plays'
        WHEN plays < 0 THEN 'negative plays'
        WHEN plays > {max_plays} THEN 'plays too large'
        WHEN plays < {min_plays} THEN 'plays too small'
    END AS reason
FROM read_parquet({path}, file_row_number = true);

CREATE OR REPLACE TEMP TABLE _stage_users AS
SELECT (row_number() OVER (ORDER BY user_key) - 1)::INTEGER AS ucode, user_key
FROM (SELECT DISTINCT user_key FROM _parquet_rows WHERE reason IS NULL AND plays >= {min_value});

-- An item's name: its first non-empty name in row order (the loader fills in names from an items file
-- or the key where there is none).
CREATE OR REPLACE TEMP TABLE _stage_artists AS
SELECT
    (row_number() OVER (ORDER BY artist_key) - 1)::INTEGER AS acode,
    artist_key,
    artist_key AS name,
    NULL::VARCHAR AS mbid,
    item_name
FROM (
    SELECT
        artist_key,
        arg_min(item_name, line_number) FILTER (WHERE trim(item_name) <> '') AS item_name
    FROM _parquet_rows
    WHERE reason IS NULL AND plays >= {min_value}
    GROUP BY artist_key
);

CREATE OR REPLACE TEMP TABLE _stage_plays AS
SELECT u.ucode, a.acode, r.plays
FROM _parquet_rows AS r
JOIN _stage_users AS u USING (user_key)
JOIN _stage_artists AS a USING (artist_key)
WHERE r.reason IS NULL AND r.plays >= {min_value};
