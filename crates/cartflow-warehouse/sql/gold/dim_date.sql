-- One row per date and hour that holds events; Monday = 0.
WITH hours AS (
    SELECT date_key, MIN(event_time) AS any_time, COUNT(*) AS events
    FROM silver.events
    GROUP BY date_key
)
SELECT
    date_key,
    date_trunc('hour', any_time) AS hour_start,
    CAST(any_time AS DATE) AS date,
    CAST(date_key / 1000000 AS INT) AS year,
    CAST(date_key / 10000 % 100 AS INT) AS month,
    CAST(date_key / 100 % 100 AS INT) AS day,
    CAST(date_key % 100 AS INT) AS hour,
    CAST((date_part('dow', any_time) + 6) % 7 AS INT) AS weekday,
    date_part('dow', any_time) IN (0, 6) AS is_weekend,
    events
FROM hours
ORDER BY date_key
