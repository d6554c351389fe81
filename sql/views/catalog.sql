-- Views over the published tables, created in recsys.duckdb and in every reader connection (the CLI,
-- `Catalog.connect()`), over the same generation as the tables. A view whose tables are not published
-- is left out. Two purposes:
--   * generic names: the music vocabulary (artists, plays, related_artists, artist_aliases) stays the
--     default, and `items`, `interactions`, `related_items`, `recommended_items` and `item_aliases`
--     say the same for any ratings file (the `triples` source);
--   * answers readable without a join: related_artists, recommendations and artist_aliases store
--     internal 0-based ids; the views below carry the key (as in the source file) and the name of
--     every item and user they mention. Names are the item names loaded with the data ([data]
--     item_name_column or items_path), or the key where there is none.

-- Every item (artist): its id, its key in the source, its name.
CREATE VIEW items AS
SELECT artist_id AS item_id, artist_key AS item_key, name AS item_name, mbid
FROM artists;

-- The positives of the input, one row per (user, item): the value after summing duplicate lines and
-- leaving out rows below [data] min_value (plays for the music sources).
CREATE VIEW interactions AS
SELECT p.user_id, u.user_key, p.artist_id AS item_id, a.artist_key AS item_key, a.name AS item_name,
    p.plays AS value
FROM plays AS p
JOIN users AS u USING (user_id)
JOIN artists AS a USING (artist_id);

-- related_artists with names and keys: for every item, the top [related] n per model (rank 1 = closest).
CREATE VIEW related_items AS
SELECT r.model, a.name AS item_name, r.rank, b.name AS related_name, r.score,
    r.artist_id AS item_id, a.artist_key AS item_key, r.related_id, b.artist_key AS related_key
FROM related_artists AS r
JOIN artists AS a ON a.artist_id = r.artist_id
JOIN artists AS b ON b.artist_id = r.related_id;

CREATE VIEW related_artists_named AS
SELECT r.model, a.name AS artist_name, r.rank, b.name AS related_name, r.score,
    r.artist_id, a.artist_key, r.related_id, b.artist_key AS related_key
FROM related_artists AS r
JOIN artists AS a ON a.artist_id = r.artist_id
JOIN artists AS b ON b.artist_id = r.related_id;

-- recommendations with the user's key and the item's key and name (items the user has are left out).
CREATE VIEW recommended_items AS
SELECT r.model, u.user_key, r.rank, a.name AS item_name, r.score,
    r.user_id, r.artist_id AS item_id, a.artist_key AS item_key
FROM recommendations AS r
JOIN users AS u ON u.user_id = r.user_id
JOIN artists AS a ON a.artist_id = r.artist_id;

CREATE VIEW recommendations_named AS
SELECT r.model, u.user_key, r.rank, a.name AS artist_name, r.score,
    r.user_id, r.artist_id, a.artist_key
FROM recommendations AS r
JOIN users AS u ON u.user_id = r.user_id
JOIN artists AS a ON a.artist_id = r.artist_id;

-- artist_aliases with both items' names and keys (listeners = users with a positive for the item).
CREATE VIEW item_aliases AS
SELECT x.model, a.name AS item_name, b.name AS alias_name, x.score, x.factor_similarity,
    x.listener_similarity AS user_similarity, x.shared_listeners AS shared_users,
    x.artist_listeners AS item_users, x.alias_listeners AS alias_users, x.expected_shared,
    x.artist_id AS item_id, a.artist_key AS item_key, x.alias_id, b.artist_key AS alias_key
FROM artist_aliases AS x
JOIN artists AS a ON a.artist_id = x.artist_id
JOIN artists AS b ON b.artist_id = x.alias_id;

CREATE VIEW artist_aliases_named AS
SELECT x.model, a.name AS artist_name, b.name AS alias_name, x.score, x.factor_similarity,
    x.listener_similarity, x.shared_listeners, x.artist_listeners, x.alias_listeners, x.expected_shared,
    x.artist_id, a.artist_key, x.alias_id, b.artist_key AS alias_key
FROM artist_aliases AS x
JOIN artists AS a ON a.artist_id = x.artist_id
JOIN artists AS b ON b.artist_id = x.alias_id;
