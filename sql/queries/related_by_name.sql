-- Artists related to one artist, given its exact name (the `recsys related` command first resolves
-- case and a leading "The"). Where several artists share the name, the most listened-to one is used.
-- Parameters: $name (artist name), $model (an enabled model, e.g. 'als'), $n (how many).
WITH target AS (
    SELECT a.artist_id
    FROM artists a LEFT JOIN plays p USING (artist_id)
    WHERE a.name = $name
    GROUP BY a.artist_id
    ORDER BY count(p.user_id) DESC, a.artist_id
    LIMIT 1
)
SELECT r.rank, b.name AS related_artist, round(r.score, 4) AS score
FROM related_artists r
JOIN target t ON t.artist_id = r.artist_id
JOIN artists b ON b.artist_id = r.related_id
WHERE r.model = $model AND r.rank <= $n
ORDER BY r.rank;
