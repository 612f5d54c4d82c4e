-- name = "unified.sales_hourly"
-- kind = "view"
-- description = "Batch + speed layer: hourly totals over every raw event, exactly once"
SELECT
  hour, store_id, category, product_id,
  sum(sales_units) AS sales_units,
  sum(sales_amount) AS sales_amount,
  sum(return_units) AS return_units,
  sum(return_amount) AS return_amount,
  sum(restock_units) AS restock_units,
  sum(event_count) AS event_count
FROM (
  SELECT hour, store_id, category, product_id, sales_units, sales_amount, return_units,
         return_amount, restock_units, event_count
  FROM historical.sales_hourly
  UNION ALL
  SELECT hour, store_id, category, product_id, sales_units, sales_amount, return_units,
         return_amount, restock_units, event_count
  FROM unified.realtime_sales_hourly
) AS layers
GROUP BY hour, store_id, category, product_id
