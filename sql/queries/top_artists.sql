-- The most listened-to artists. Parameters: $n.
SELECT a.name, count(*) AS listeners, sum(p.plays)::BIGINT AS plays
FROM plays p JOIN artists a USING (artist_id)
GROUP BY a.name
ORDER BY listeners DESC, a.name
LIMIT $n;
