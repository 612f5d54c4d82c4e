-- name = "unified.hourly_sales_trend"
-- kind = "view"
SELECT
  hour,
  sum(sales_units) AS sales_units,
  sum(sales_amount) AS sales_amount,
  sum(sales_amount) - sum(return_amount) AS net_revenue
FROM unified.sales_hourly_layers
GROUP BY hour
