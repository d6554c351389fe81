-- Recommendations for one user (by the user's original key), artists already played removed.
-- Parameters: $user (user key), $model (an enabled model, e.g. 'als'), $n (how many).
SELECT r.rank, a.name AS artist, round(r.score, 4) AS score
FROM recommendations r
JOIN users u ON u.user_id = r.user_id
JOIN artists a ON a.artist_id = r.artist_id
WHERE u.user_key = $user AND r.model = $model AND r.rank <= $n
ORDER BY r.rank;
