-- name = "unified.sales_by_category"
-- kind = "view"
SELECT
  category,
  sum(sales_units) AS sales_units,
  sum(sales_amount) AS sales_amount,
  sum(return_amount) AS return_amount,
  sum(sales_amount) - sum(return_amount) AS net_revenue
FROM unified.sales_hourly_layers
GROUP BY category
