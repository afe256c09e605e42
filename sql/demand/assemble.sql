-- The published feature table: series statistics + calendar + category aggregates, one row per
-- series x date. Category aggregates are history statistics too: NULL on future rows.
-- Inputs: demand_series_stats, demand_calendar, demand_category_stats.
SELECT
  s.item_id, s.location_id, s.category, s.date, s.is_future, s.target, s.in_stock,
  c.day_of_week, c.day_of_month, c.month, c.week_of_year, c.day_of_year,
  c.is_holiday, c.is_black_friday, c.is_cyber_monday, c.is_prime_day,
  c.days_to_christmas, c.days_to_black_friday, c.days_to_prime_day,
  s.price, s.price_ratio_28, s.promo, s.item_age_days,
  s.lag_0, s.lag_1, s.lag_2, s.lag_3, s.lag_4, s.lag_5, s.lag_6, s.lag_13, s.lag_20, s.lag_27,
  s.roll_mean_7, s.roll_std_7, s.roll_mean_28, s.roll_std_28, s.roll_mean_91, s.roll_std_91,
  s.roll_mean_364, s.observed_days_364, s.nonzero_share_91, s.stockout_days_28,
  s.dow_mean_0, s.dow_mean_1, s.dow_mean_2, s.dow_mean_3, s.dow_mean_4, s.dow_mean_5, s.dow_mean_6,
  s.year_ago_lag_364, s.year_ago_mean_7, s.year_ago_mean_28,
  CASE WHEN s.is_future = 0 THEN g.cat_items END AS cat_items,
  CASE WHEN s.is_future = 0 THEN g.cat_mean_7 END AS cat_mean_7,
  CASE WHEN s.is_future = 0 THEN g.cat_mean_28 END AS cat_mean_28,
  CASE WHEN s.is_future = 0 THEN g.cat_mean_91 END AS cat_mean_91,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_0 END AS cat_dow_mean_0,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_1 END AS cat_dow_mean_1,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_2 END AS cat_dow_mean_2,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_3 END AS cat_dow_mean_3,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_4 END AS cat_dow_mean_4,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_5 END AS cat_dow_mean_5,
  CASE WHEN s.is_future = 0 THEN g.cat_dow_mean_6 END AS cat_dow_mean_6
FROM demand_series_stats s
JOIN demand_calendar c ON c.date = s.date
LEFT JOIN demand_category_stats g
  ON g.category = s.category AND g.location_id = s.location_id AND g.date = s.date
