-- Why input lines were rejected, per file. No parameters.
SELECT source_file, reason, count(*) AS lines, min(line_number) AS first_line
FROM rejects
GROUP BY source_file, reason
ORDER BY lines DESC;
