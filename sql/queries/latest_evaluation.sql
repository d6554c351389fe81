-- Metrics of the latest evaluation run, one row per model. No parameters.
PIVOT (
    SELECT model, metric, value FROM evaluation
    WHERE run_at = (SELECT max(run_at) FROM evaluation)
) ON metric USING first(value)
ORDER BY model;
