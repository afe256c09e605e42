-- Calendar features of every date in the spine (input view: demand_dates with one column `date`).
-- Holidays: fixed and floating US federal holidays, Black Friday / Cyber Monday (after the fourth
-- Thursday of November) and a Prime-Day-like peak on the second Tuesday of July and the day after.
-- (Subqueries, not WITH: see spine.sql.)
SELECT
  d.date,
  (dayofweek(d.date) + 5) % 7 AS day_of_week,            -- 0 = Monday .. 6 = Sunday
  dayofmonth(d.date) AS day_of_month,
  month(d.date) AS month,
  weekofyear(d.date) AS week_of_year,
  dayofyear(d.date) AS day_of_year,
  CASE WHEN h.date IS NOT NULL THEN 1 ELSE 0 END AS is_holiday,
  CASE WHEN d.date = date_add(p.thanksgiving, 1) THEN 1 ELSE 0 END AS is_black_friday,
  CASE WHEN d.date = date_add(p.thanksgiving, 4) THEN 1 ELSE 0 END AS is_cyber_monday,
  CASE WHEN d.date IN (p.prime_day, date_add(p.prime_day, 1)) THEN 1 ELSE 0 END AS is_prime_day,
  -- signed distance to this year's peaks, clipped: lets a model learn run-ups and after-effects
  LEAST(GREATEST(datediff(make_date(year(d.date), 12, 25), d.date), -30), 30) AS days_to_christmas,
  LEAST(GREATEST(datediff(date_add(p.thanksgiving, 1), d.date), -30), 30) AS days_to_black_friday,
  LEAST(GREATEST(datediff(p.prime_day, d.date), -30), 30) AS days_to_prime_day
FROM demand_dates d
JOIN (
  SELECT y,
         date_add(next_day(make_date(y, 10, 31), 'TH'), 21) AS thanksgiving,  -- 4th Thursday of Nov
         date_add(next_day(make_date(y, 6, 30), 'TU'), 7) AS prime_day         -- 2nd Tuesday of July
  FROM (SELECT DISTINCT year(date) AS y FROM demand_dates) years
) p ON p.y = year(d.date)
LEFT JOIN (
  SELECT DISTINCT date FROM (
    SELECT explode(array(
      make_date(y, 1, 1),                                          -- New Year
      date_add(next_day(make_date(y - 1, 12, 31), 'MO'), 14),      -- Martin Luther King day
      date_add(next_day(make_date(y, 1, 31), 'MO'), 14),           -- Presidents day
      next_day(make_date(y, 5, 24), 'MO'),                         -- Memorial day (last Mon of May)
      make_date(y, 7, 4),                                          -- Independence day
      next_day(make_date(y, 8, 31), 'MO'),                         -- Labor day
      make_date(y, 11, 11),                                        -- Veterans day
      date_add(next_day(make_date(y, 10, 31), 'TH'), 21),          -- Thanksgiving
      make_date(y, 12, 25)                                         -- Christmas
    )) AS date
    FROM (SELECT DISTINCT year(date) AS y FROM demand_dates) years
  ) listed
) h ON h.date = d.date
