-- name = "unified.realtime_sales_hourly"
-- kind = "view"
-- description = "Speed layer: hourly totals of the raw events no run has read yet"
SELECT
  date_trunc('hour', r.event_time) AS hour,
  r.store_id,
  r.category,
  r.product_id,
  sum(CASE WHEN r.transaction_type = 'SALE' THEN r.quantity ELSE 0 END) AS sales_units,
  sum(CASE WHEN r.transaction_type = 'SALE' THEN r.quantity * r.unit_price ELSE 0 END) AS sales_amount,
  sum(CASE WHEN r.transaction_type = 'RETURN' THEN r.quantity ELSE 0 END) AS return_units,
  sum(CASE WHEN r.transaction_type = 'RETURN' THEN r.quantity * r.unit_price ELSE 0 END) AS return_amount,
  sum(CASE WHEN r.transaction_type = 'RESTOCK' THEN r.quantity ELSE 0 END) AS restock_units,
  count(*) AS event_count
-- The (tiny) boundary is the join's left, build side; the raw events stream past it.
FROM historical.sales_hourly__boundary b
RIGHT JOIN raw.retail_events r
  ON r._kafka_topic = b.topic AND r._kafka_partition = b.partition
WHERE b.next_offset IS NULL OR r._kafka_offset >= b.next_offset
GROUP BY 1, 2, 3, 4
