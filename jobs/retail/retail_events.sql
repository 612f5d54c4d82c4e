-- name = "unified.retail_events"
-- kind = "view"
-- description = "Every raw retail event exactly once (the sink guarantees it), cleaned, with amount"
SELECT
  event_time,
  store_id,
  trim(product_id) AS product_id,
  trim(category) AS category,
  upper(trim(transaction_type)) AS transaction_type,
  quantity,
  unit_price,
  quantity * unit_price AS amount,
  _kafka_topic,
  _kafka_partition,
  _kafka_offset
FROM raw.retail_events
