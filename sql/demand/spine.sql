-- One row per series x date: the history, then the future dates that carry known covariates.
-- Inputs (temp views): demand_history, demand_future, demand_items (all normalised by features.py).
-- `demand` is the target with stockout-censored days (in_stock = 0) blanked out: sales on those days
-- understate demand, so every statistic downstream skips them.
-- (Subqueries, not WITH: Spark 4.1's CTE inlining fails when a view built on a CTE is joined with
-- another view derived from it.)
SELECT
  u.item_id,
  u.location_id,
  u.date,
  CAST(datediff(u.date, DATE'1970-01-01') AS INT) AS day_number,
  u.is_future,
  u.target,
  CASE WHEN u.is_future = 0 THEN COALESCE(u.in_stock, 1) END AS in_stock,
  CASE WHEN u.is_future = 0 AND COALESCE(u.in_stock, 1) = 1 THEN u.target END AS demand,
  -- a plan without a price keeps the last known price (the best guess of a known covariate)
  COALESCE(u.price, last(u.price, true) OVER (
    PARTITION BY u.item_id, u.location_id ORDER BY u.date
    ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)) AS price,
  COALESCE(u.promo, 0) AS promo,
  COALESCE(u.category, MAX(u.category) OVER (PARTITION BY u.item_id), ic.category, 'unknown') AS category
FROM (
  SELECT item_id, location_id, date, target, in_stock, price, promo, category, 0 AS is_future
  FROM demand_history
  UNION ALL
  -- the history wins where a plan row repeats an observed date
  SELECT f.item_id, f.location_id, f.date, CAST(NULL AS DOUBLE), CAST(NULL AS INT),
         f.price, f.promo, f.category, 1
  FROM demand_future f
  LEFT ANTI JOIN demand_history h
    ON h.item_id = f.item_id AND h.location_id = f.location_id AND h.date = f.date
) u
LEFT JOIN (
  SELECT item_id, MAX(category) AS category FROM demand_items GROUP BY item_id
) ic ON u.item_id = ic.item_id
