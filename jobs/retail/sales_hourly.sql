-- Hourly totals per store and product of the events this run reads (the runner
-- shows only events past the previous run's boundary; merge = "sum" adds them up).
SELECT
  date_trunc('hour', event_time) AS hour,
  store_id,
  category,
  product_id,
  sum(CASE WHEN transaction_type = 'SALE' THEN quantity ELSE 0 END) AS sales_units,
  sum(CASE WHEN transaction_type = 'SALE' THEN quantity * unit_price ELSE 0 END) AS sales_amount,
  sum(CASE WHEN transaction_type = 'RETURN' THEN quantity ELSE 0 END) AS return_units,
  sum(CASE WHEN transaction_type = 'RETURN' THEN quantity * unit_price ELSE 0 END) AS return_amount,
  sum(CASE WHEN transaction_type = 'RESTOCK' THEN quantity ELSE 0 END) AS restock_units,
  count(*) AS event_count
FROM raw.retail_events
GROUP BY 1, 2, 3, 4
