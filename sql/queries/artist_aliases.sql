-- Candidate duplicate artists: near-identical taste profiles, (almost) no shared listeners.
-- Parameters: $model (an enabled model, e.g. 'als'), $n (how many pairs).
SELECT a.name AS artist, b.name AS possible_alias,
       round(x.factor_similarity, 3) AS factor_similarity,
       round(x.listener_similarity, 3) AS listener_similarity
FROM artist_aliases x
JOIN artists a ON a.artist_id = x.artist_id
JOIN artists b ON b.artist_id = x.alias_id
WHERE x.model = $model
ORDER BY x.score DESC
LIMIT $n;
