-- Every purchase, for the fraud_rules transform (see README.md).
SELECT user_id, session_id, country, event_time, price, quantity
FROM raw.clickstream_events
WHERE event_type = 'purchase'
