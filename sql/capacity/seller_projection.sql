-- Projected sales per seller and storage type from the demand forecasts (median, q_0.5), summed over
-- items and locations and averaged over the forecast days: cube sold per day drives the base limit,
-- sales value per day the market simulation. Items above {oversize_cuft} cubic feet per unit are oversize.
-- Inputs: capacity_forecasts (published/demand/forecasts at ds), capacity_items (reference items).
SELECT
  i.seller_id,
  CASE WHEN i.cube_cuft > {oversize_cuft} THEN 'oversize' ELSE 'standard' END AS storage_type,
  COUNT(DISTINCT f.item_id) AS items,
  SUM(f.`q_0.5` * i.cube_cuft) / COUNT(DISTINCT f.target_date) AS projected_daily_cuft,
  SUM(f.`q_0.5` * i.price) / COUNT(DISTINCT f.target_date) AS projected_daily_sales
FROM capacity_forecasts f
JOIN capacity_items i ON f.item_id = i.item_id
GROUP BY i.seller_id, CASE WHEN i.cube_cuft > {oversize_cuft} THEN 'oversize' ELSE 'standard' END
