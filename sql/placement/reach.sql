-- Per forecast item x region: how many FCs can deliver there, and the item's cube (null when the item is
-- not in `items`). The gate rejects pairs with no reachable FC or no usable cube.
SELECT f.item_id,
       f.location_id AS region_id,
       COUNT(DISTINCT l.facility_id) AS reachable_fcs,
       MAX(i.cube_cuft) AS cube_cuft
FROM (SELECT DISTINCT item_id, location_id FROM placement_forecasts) f
LEFT JOIN (SELECT d.facility_id, d.region_id
           FROM placement_delivery_lanes d
           JOIN placement_facilities fa ON d.facility_id = fa.facility_id AND fa.facility_type = 'FC') l
       ON l.region_id = f.location_id
LEFT JOIN placement_items i ON i.item_id = f.item_id
GROUP BY f.item_id, f.location_id
