-- HetRec tags, run inside the load's transaction after load_finish.sql (which made _user_map and
-- _artist_map). Staging: _stage_tags(tag_id, tag), _stage_tagged(user_key, artist_key, tag_id).
-- Tag assignments whose user or artist has no plays, or whose tag is not in tags.dat, are left out
-- (the loader counts them).
INSERT INTO tags SELECT tag_id, tag FROM _stage_tags ORDER BY tag_id;

INSERT INTO artist_tags
SELECT u.user_id, a.artist_id, t.tag_id
FROM _stage_tagged AS t
JOIN _user_map AS u ON u.user_key = t.user_key
JOIN _artist_map AS a ON a.artist_key = t.artist_key
WHERE t.tag_id IN (SELECT tag_id FROM _stage_tags);
