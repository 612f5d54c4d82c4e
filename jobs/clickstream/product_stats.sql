-- name = "unified.product_stats"
-- kind = "view"
SELECT
  product_id,
  category,
  sum(CASE WHEN event_type = 'product_viewed' THEN 1 ELSE 0 END) AS views,
  sum(CASE WHEN event_type = 'product_added_to_cart' THEN 1 ELSE 0 END) AS cart_adds,
  sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS purchases,
  sum(CASE WHEN event_type = 'purchase' THEN price * coalesce(quantity, 1) ELSE 0 END) AS revenue
FROM raw.clickstream_events
WHERE product_id IS NOT NULL
GROUP BY product_id, category
