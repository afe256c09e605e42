-- Matured impressions of the training window ending at {ds}, each with its click label.
-- An impression shown on day S matures on S + {window_days}: by then every click inside its attribution
-- window has arrived. Pending impressions (S > {ds} - {window_days}) are left out, never counted as
-- non-clicks; a click counts only inside the window, and only the first click of an impression.
WITH first_click AS (
  SELECT impression_id, min(clicked_at) AS clicked_at
  FROM clicks
  GROUP BY impression_id
)
SELECT i.impression_id, i.segment, i.callout_id, i.layout_id, i.position, i.propensity, i.shown_at,
       date_add(to_date(i.shown_at), {window_days}) AS matured_on,
       c.clicked_at,
       CAST(CASE WHEN c.clicked_at IS NOT NULL
                  AND c.clicked_at < i.shown_at + make_interval(0, 0, 0, {window_days}) THEN 1 ELSE 0 END AS INT) AS click
FROM impressions i
LEFT JOIN first_click c ON c.impression_id = i.impression_id
WHERE date_add(to_date(i.shown_at), {window_days}) <= to_date('{ds}')
  AND date_add(to_date(i.shown_at), {window_days}) > date_sub(to_date('{ds}'), {history_days})
