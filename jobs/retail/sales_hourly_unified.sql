-- name = "unified.sales_hourly"
-- kind = "view"
-- description = "Batch + speed layer: hourly totals over every raw event, exactly once, one row per key"
SELECT
  hour, store_id, category, product_id,
  sum(sales_units) AS sales_units,
  sum(sales_amount) AS sales_amount,
  sum(return_units) AS return_units,
  sum(return_amount) AS return_amount,
  sum(restock_units) AS restock_units,
  sum(event_count) AS event_count
FROM unified.sales_hourly_layers
GROUP BY hour, store_id, category, product_id
