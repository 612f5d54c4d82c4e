-- name = "unified.product_performance"
-- kind = "view"
-- description = "Products by net revenue; revenue_rank 1 = highest (ties share a rank)"
SELECT
  product_id,
  category,
  sales_units,
  sales_amount,
  net_revenue,
  rank() OVER (ORDER BY net_revenue DESC) AS revenue_rank
FROM (
  SELECT
    product_id,
    category,
    sum(sales_units) AS sales_units,
    sum(sales_amount) AS sales_amount,
    sum(sales_amount) - sum(return_amount) AS net_revenue
  FROM unified.sales_hourly_layers
  GROUP BY product_id, category
) AS products
