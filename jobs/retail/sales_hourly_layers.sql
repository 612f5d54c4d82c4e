-- name = "unified.sales_hourly_layers"
-- kind = "view"
-- description = "Building block: the batch layer's hourly rows and the speed layer's, not merged (a key may appear in both); sum over it"
SELECT hour, store_id, category, product_id, sales_units, sales_amount, return_units,
       return_amount, restock_units, event_count
FROM historical.sales_hourly
UNION ALL
SELECT hour, store_id, category, product_id, sales_units, sales_amount, return_units,
       return_amount, restock_units, event_count
FROM unified.realtime_sales_hourly
