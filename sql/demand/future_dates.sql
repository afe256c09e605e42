-- Future dates for every series when no plan of known covariates was given: the `horizon` days after
-- the last date of the whole history (one shared forecast origin). Covariates are filled by the spine.
SELECT s.item_id, s.location_id, date_add(o.origin, h.step) AS date,
       CAST(NULL AS DOUBLE) AS price, CAST(NULL AS INT) AS promo, s.category
FROM (SELECT item_id, location_id, MAX(category) AS category
      FROM demand_history GROUP BY item_id, location_id) s
CROSS JOIN (SELECT MAX(date) AS origin FROM demand_history) o
CROSS JOIN (SELECT explode(sequence(1, {horizon})) AS step) h
