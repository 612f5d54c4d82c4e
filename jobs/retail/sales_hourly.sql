-- Hourly totals per store and product of the events this run reads (the runner
-- shows only events past the previous run's boundary; merge = "sum" adds them up).
-- Money is DECIMAL(18, 2) (up to 10^16 per hour and product, stored as a 64-bit
-- integer in Parquet: every reader decodes it as a long); a sum past that fails
-- the run instead of wrapping.
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
FROM raw.retail_events
GROUP BY 1, 2, 3, 4
