-- Distinct users with any action in the window_days days up to as_of, the time of
-- the latest event (so the view is deterministic for a given table state).
WITH latest AS (SELECT max("timestamp") AS as_of FROM raw.user_activity)
SELECT 1 AS window_days, l.as_of, count(DISTINCT a.user_id) AS active_users
FROM latest l JOIN raw.user_activity a
  ON a."timestamp" > l.as_of - INTERVAL '1' DAY AND a."timestamp" <= l.as_of
GROUP BY l.as_of
UNION ALL
SELECT 7 AS window_days, l.as_of, count(DISTINCT a.user_id) AS active_users
FROM latest l JOIN raw.user_activity a
  ON a."timestamp" > l.as_of - INTERVAL '7' DAY AND a."timestamp" <= l.as_of
GROUP BY l.as_of
UNION ALL
SELECT 30 AS window_days, l.as_of, count(DISTINCT a.user_id) AS active_users
FROM latest l JOIN raw.user_activity a
  ON a."timestamp" > l.as_of - INTERVAL '30' DAY AND a."timestamp" <= l.as_of
GROUP BY l.as_of
