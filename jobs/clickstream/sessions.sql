-- Every clickstream event, for the sessionize transform (see README.md).
SELECT session_id, user_id, country, event_time, event_type, product_id, price, quantity
FROM raw.clickstream_events
