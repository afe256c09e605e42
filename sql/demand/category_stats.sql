-- Category x location aggregates of the average item (mean over the category's observed items at
-- that location and date), so a new item can borrow the level and weekly shape of similar items.
-- Known at the end of each date: frames end at the current row; running-sum differences as in
-- series_stats.sql. Input: demand_spine (its history rows).
SELECT
  category, location_id, date,
  items_observed AS cat_items,
  CAST(s0 - s7 AS DOUBLE) / NULLIF(n0 - n7, 0) AS cat_mean_7,
  CAST(s0 - s28 AS DOUBLE) / NULLIF(n0 - n28, 0) AS cat_mean_28,
  CAST(s0 - s91 AS DOUBLE) / NULLIF(n0 - n91, 0) AS cat_mean_91,
  CASE (day_of_week + 7) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_0,
  CASE (day_of_week + 6) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_1,
  CASE (day_of_week + 5) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_2,
  CASE (day_of_week + 4) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_3,
  CASE (day_of_week + 3) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_4,
  CASE (day_of_week + 2) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_5,
  CASE (day_of_week + 1) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END AS cat_dow_mean_6
FROM (
  SELECT r.*,
    same_weekday_mean AS w0,
    MAX(same_weekday_mean) OVER l1 AS w1,
    MAX(same_weekday_mean) OVER l2 AS w2,
    MAX(same_weekday_mean) OVER l3 AS w3,
    MAX(same_weekday_mean) OVER l4 AS w4,
    MAX(same_weekday_mean) OVER l5 AS w5,
    MAX(same_weekday_mean) OVER l6 AS w6
  FROM (
    SELECT d.*,
      SUM(item_exact) OVER upto AS s0, COUNT(item_mean) OVER upto AS n0,
      COALESCE(SUM(item_exact) OVER upto7, 0) AS s7, COUNT(item_mean) OVER upto7 AS n7,
      COALESCE(SUM(item_exact) OVER upto28, 0) AS s28, COUNT(item_mean) OVER upto28 AS n28,
      COALESCE(SUM(item_exact) OVER upto91, 0) AS s91, COUNT(item_mean) OVER upto91 AS n91,
      AVG(item_mean) OVER (PARTITION BY category, location_id, day_of_week ORDER BY day_number
                           RANGE BETWEEN 27 PRECEDING AND CURRENT ROW) AS same_weekday_mean
    FROM (
      SELECT category, location_id, date, day_number,
             (dayofweek(date) + 5) % 7 AS day_of_week,
             AVG(demand) AS item_mean,
             -- running sums in DECIMAL are exact: a sum over a shorter prefix (an incremental night)
             -- gives bit for bit the same differences as over the whole history
             CAST(AVG(demand) AS DECIMAL(38, 18)) AS item_exact,
             COUNT(demand) AS items_observed
      FROM demand_spine
      WHERE is_future = 0
      GROUP BY category, location_id, date, day_number
    ) d
    WINDOW
      upto AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
      upto7 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 7 PRECEDING),
      upto28 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 28 PRECEDING),
      upto91 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 91 PRECEDING)
  ) r
  WINDOW
    l1 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 1 PRECEDING AND 1 PRECEDING),
    l2 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 2 PRECEDING AND 2 PRECEDING),
    l3 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 3 PRECEDING AND 3 PRECEDING),
    l4 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 4 PRECEDING AND 4 PRECEDING),
    l5 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 5 PRECEDING AND 5 PRECEDING),
    l6 AS (PARTITION BY category, location_id ORDER BY day_number RANGE BETWEEN 6 PRECEDING AND 6 PRECEDING)
) t
