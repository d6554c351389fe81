-- Artists related to one artist, by name (case-insensitive).
-- Parameters: $name (artist name), $model ('als' or 'lsa'), $n (how many).
SELECT r.rank, b.name AS related_artist, round(r.score, 4) AS score
FROM related_artists r
JOIN artists a ON a.artist_id = r.artist_id
JOIN artists b ON b.artist_id = r.related_id
WHERE lower(a.name) = lower($name) AND r.model = $model AND r.rank <= $n
ORDER BY r.rank;
