-- name = "unified.funnel_daily"
-- kind = "view"
-- description = "Sessions per day (of their first event) and country, and how far they got"
SELECT
  date,
  country,
  count(*) AS sessions,
  sum(viewed) AS viewed,
  sum(carted) AS carted,
  sum(purchased) AS purchased,
  CAST(sum(purchased) AS DOUBLE) / count(*) AS conversion_rate
FROM (
  SELECT
    session_id,
    CAST(min(event_time) AS DATE) AS date,
    min(country) AS country,
    max(CASE WHEN event_type = 'product_viewed' THEN 1 ELSE 0 END) AS viewed,
    max(CASE WHEN event_type = 'product_added_to_cart' THEN 1 ELSE 0 END) AS carted,
    max(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchased
  FROM raw.clickstream_events
  GROUP BY session_id
) AS sessions
GROUP BY date, country
