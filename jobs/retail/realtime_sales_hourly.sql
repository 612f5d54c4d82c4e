-- name = "unified.realtime_sales_hourly"
-- kind = "view"
-- description = "Speed layer: hourly totals of the raw events no run has read yet"
-- raw."retail_events@since:historical.sales_hourly" is raw.retail_events past the
-- boundary historical.sales_hourly's snapshot records: only the files committed
-- since that run are read (see engine/src/fresh.rs).
SELECT
  date_trunc('hour', event_time) AS hour,
  store_id,
  category,
  product_id,
  sum(CASE WHEN transaction_type = 'SALE' THEN quantity ELSE 0 END) AS sales_units,
  CAST(sum(CASE WHEN transaction_type = 'SALE' THEN quantity * unit_price ELSE 0 END) AS DECIMAL(18, 2)) AS sales_amount,
  sum(CASE WHEN transaction_type = 'RETURN' THEN quantity ELSE 0 END) AS return_units,
  CAST(sum(CASE WHEN transaction_type = 'RETURN' THEN quantity * unit_price ELSE 0 END) AS DECIMAL(18, 2)) AS return_amount,
  sum(CASE WHEN transaction_type = 'RESTOCK' THEN quantity ELSE 0 END) AS restock_units,
  count(*) AS event_count
FROM raw."retail_events@since:historical.sales_hourly"
GROUP BY 1, 2, 3, 4
