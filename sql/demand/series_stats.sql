-- Per-series history features, each known at the END of its date: every frame ends at or before the
-- current row, so no value depends on a later date. Frames are over the day number (RANGE), so a
-- missing day gives NULL (lags) or a shorter average instead of silently shifting by a row.
-- Rolling statistics are differences of running sums: Spark re-aggregates a bounded sliding frame
-- for every row (O(width)), but grows an UNBOUNDED PRECEDING frame incrementally (O(1)).
-- Inputs: demand_spine (spine.sql), demand_calendar (calendar.sql).
SELECT
  item_id, location_id, date, day_number, is_future, target, in_stock, demand, category,
  price,
  price / NULLIF(price_mean_28, 0) AS price_ratio_28,
  promo,
  datediff(date, first_sale_date) AS item_age_days,
  -- history statistics exist only for observed dates; future rows keep their year-ago values,
  -- which come from dates at least 361 days before them
  CASE WHEN is_future = 0 THEN demand END AS lag_0,
  CASE WHEN is_future = 0 THEN lag_1 END AS lag_1,
  CASE WHEN is_future = 0 THEN lag_2 END AS lag_2,
  CASE WHEN is_future = 0 THEN lag_3 END AS lag_3,
  CASE WHEN is_future = 0 THEN lag_4 END AS lag_4,
  CASE WHEN is_future = 0 THEN lag_5 END AS lag_5,
  CASE WHEN is_future = 0 THEN lag_6 END AS lag_6,
  CASE WHEN is_future = 0 THEN lag_13 END AS lag_13,
  CASE WHEN is_future = 0 THEN lag_20 END AS lag_20,
  CASE WHEN is_future = 0 THEN lag_27 END AS lag_27,
  CASE WHEN is_future = 0 THEN (s0 - s7) / NULLIF(n0 - n7, 0) END AS roll_mean_7,
  CASE WHEN is_future = 0 THEN SQRT(GREATEST(((q0 - q7) - POW(s0 - s7, 2) / (n0 - n7)) / NULLIF(n0 - n7 - 1, 0), 0)) END AS roll_std_7,
  CASE WHEN is_future = 0 THEN (s0 - s28) / NULLIF(n0 - n28, 0) END AS roll_mean_28,
  CASE WHEN is_future = 0 THEN SQRT(GREATEST(((q0 - q28) - POW(s0 - s28, 2) / (n0 - n28)) / NULLIF(n0 - n28 - 1, 0), 0)) END AS roll_std_28,
  CASE WHEN is_future = 0 THEN (s0 - s91) / NULLIF(n0 - n91, 0) END AS roll_mean_91,
  CASE WHEN is_future = 0 THEN SQRT(GREATEST(((q0 - q91) - POW(s0 - s91, 2) / (n0 - n91)) / NULLIF(n0 - n91 - 1, 0), 0)) END AS roll_std_91,
  CASE WHEN is_future = 0 THEN (s0 - s364) / NULLIF(n0 - n364, 0) END AS roll_mean_364,
  CASE WHEN is_future = 0 THEN n0 - n364 END AS observed_days_364,
  CASE WHEN is_future = 0 THEN (p0 - p91) / NULLIF(n0 - n91, 0) END AS nonzero_share_91,
  CASE WHEN is_future = 0 THEN o0 - o28 END AS stockout_days_28,
  -- mean of each weekday over the last four weeks (a model picks the target weekday's): the
  -- same-weekday mean as of the latest date with that weekday
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 7) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_0,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 6) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_1,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 5) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_2,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 4) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_3,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 3) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_4,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 2) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_5,
  CASE WHEN is_future = 0 THEN CASE (day_of_week + 1) % 7 WHEN 0 THEN w0 WHEN 1 THEN w1 WHEN 2 THEN w2 WHEN 3 THEN w3 WHEN 4 THEN w4 WHEN 5 THEN w5 ELSE w6 END END AS dow_mean_6,
  -- the same dates a year (52 weeks) earlier: known up to 361 days ahead, so usable for target dates
  year_ago_lag_364,
  (s361 - s368) / NULLIF(n361 - n368, 0) AS year_ago_mean_7,
  (s364 - s392) / NULLIF(n364 - n392, 0) AS year_ago_mean_28
FROM (
  SELECT r.*,
    MAX(demand) OVER l1 AS lag_1,
    MAX(demand) OVER l2 AS lag_2,
    MAX(demand) OVER l3 AS lag_3,
    MAX(demand) OVER l4 AS lag_4,
    MAX(demand) OVER l5 AS lag_5,
    MAX(demand) OVER l6 AS lag_6,
    MAX(demand) OVER l13 AS lag_13,
    MAX(demand) OVER l20 AS lag_20,
    MAX(demand) OVER l27 AS lag_27,
    MAX(demand) OVER l364 AS year_ago_lag_364,
    -- w<j>: the same-weekday mean of j days ago (j = 0..6 covers every weekday)
    same_weekday_mean AS w0,
    MAX(same_weekday_mean) OVER l1 AS w1,
    MAX(same_weekday_mean) OVER l2 AS w2,
    MAX(same_weekday_mean) OVER l3 AS w3,
    MAX(same_weekday_mean) OVER l4 AS w4,
    MAX(same_weekday_mean) OVER l5 AS w5,
    MAX(same_weekday_mean) OVER l6 AS w6
  FROM (
    SELECT b.*,
      -- running sums (s: demand, q: squares, n: observed days, p: positive days, o: stockout days)
      -- up to the current day and up to k days before it
      SUM(demand) OVER upto AS s0, SUM(demand * demand) OVER upto AS q0, COUNT(demand) OVER upto AS n0,
      SUM(CASE WHEN demand > 0 THEN 1 ELSE 0 END) OVER upto AS p0,
      SUM(CASE WHEN in_stock = 0 THEN 1 ELSE 0 END) OVER upto AS o0,
      COALESCE(SUM(demand) OVER upto7, 0) AS s7, COALESCE(SUM(demand * demand) OVER upto7, 0) AS q7,
      COUNT(demand) OVER upto7 AS n7,
      COALESCE(SUM(demand) OVER upto28, 0) AS s28, COALESCE(SUM(demand * demand) OVER upto28, 0) AS q28,
      COUNT(demand) OVER upto28 AS n28,
      COALESCE(SUM(CASE WHEN in_stock = 0 THEN 1 ELSE 0 END) OVER upto28, 0) AS o28,
      COALESCE(SUM(demand) OVER upto91, 0) AS s91, COALESCE(SUM(demand * demand) OVER upto91, 0) AS q91,
      COUNT(demand) OVER upto91 AS n91,
      COALESCE(SUM(CASE WHEN demand > 0 THEN 1 ELSE 0 END) OVER upto91, 0) AS p91,
      COALESCE(SUM(demand) OVER upto364, 0) AS s364, COUNT(demand) OVER upto364 AS n364,
      COALESCE(SUM(demand) OVER upto361, 0) AS s361, COUNT(demand) OVER upto361 AS n361,
      COALESCE(SUM(demand) OVER upto368, 0) AS s368, COUNT(demand) OVER upto368 AS n368,
      COALESCE(SUM(demand) OVER upto392, 0) AS s392, COUNT(demand) OVER upto392 AS n392,
      -- prices are not exact in binary: DECIMAL running sums, so that the difference does not depend
      -- on how long the prefix is (an incremental night equals a full build bit for bit)
      CAST(SUM(CAST(price AS DECIMAL(30, 12))) OVER upto - COALESCE(SUM(CAST(price AS DECIMAL(30, 12))) OVER upto28, 0) AS DOUBLE)
        / NULLIF(COUNT(price) OVER upto - COUNT(price) OVER upto28, 0) AS price_mean_28,
      MIN(CASE WHEN target > 0 THEN date END) OVER upto AS first_sale_date,
      -- at most four rows per frame: cheap even as a sliding frame
      AVG(demand) OVER (PARTITION BY item_id, location_id, day_of_week ORDER BY day_number
                        RANGE BETWEEN 27 PRECEDING AND CURRENT ROW) AS same_weekday_mean
    FROM (
      SELECT s.*, c.day_of_week
      FROM demand_spine s JOIN demand_calendar c ON s.date = c.date
    ) b
    WINDOW
      upto AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW),
      upto7 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 7 PRECEDING),
      upto28 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 28 PRECEDING),
      upto91 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 91 PRECEDING),
      upto361 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 361 PRECEDING),
      upto364 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 364 PRECEDING),
      upto368 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 368 PRECEDING),
      upto392 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN UNBOUNDED PRECEDING AND 392 PRECEDING)
  ) r
  WINDOW
    l1 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 1 PRECEDING AND 1 PRECEDING),
    l2 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 2 PRECEDING AND 2 PRECEDING),
    l3 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 3 PRECEDING AND 3 PRECEDING),
    l4 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 4 PRECEDING AND 4 PRECEDING),
    l5 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 5 PRECEDING AND 5 PRECEDING),
    l6 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 6 PRECEDING AND 6 PRECEDING),
    l13 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 13 PRECEDING AND 13 PRECEDING),
    l20 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 20 PRECEDING AND 20 PRECEDING),
    l27 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 27 PRECEDING AND 27 PRECEDING),
    l364 AS (PARTITION BY item_id, location_id ORDER BY day_number RANGE BETWEEN 364 PRECEDING AND 364 PRECEDING)
) t
