-- Each month of each customer with the state it led to: the next month's state columns (NULL in the
-- customer's last month), so every estimator stage reads (state, action, next state) rows.
-- Inputs: membership_panel (raw/membership/panel at ds: one row per customer and month, validated).
SELECT
  p.*,
  LEAD(segment)       OVER w AS next_segment,
  LEAD(plan)          OVER w AS next_plan,
  LEAD(months_left)   OVER w AS next_months_left,
  LEAD(tenure_band)   OVER w AS next_tenure_band,
  LEAD(shipping_use)  OVER w AS next_shipping_use,
  LEAD(video_use)     OVER w AS next_video_use,
  LEAD(music_use)     OVER w AS next_music_use,
  LEAD(grocery_use)   OVER w AS next_grocery_use,
  LEAD(price_monthly) OVER w AS next_price_monthly,
  LEAD(price_annual)  OVER w AS next_price_annual
FROM membership_panel p
WINDOW w AS (PARTITION BY customer_id ORDER BY month)
