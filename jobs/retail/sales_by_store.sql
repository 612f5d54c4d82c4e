-- name = "unified.sales_by_store"
-- kind = "view"
SELECT
  store_id,
  sum(sales_units) AS sales_units,
  sum(sales_amount) AS sales_amount,
  sum(return_amount) AS return_amount,
  sum(sales_amount) - sum(return_amount) AS net_revenue
FROM unified.sales_hourly_layers
GROUP BY store_id
