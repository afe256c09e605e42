-- Past inventory performance per seller and storage type over the inventory extract's trailing weeks:
-- sell-through = cube sold / (cube sold + average cube on hand), aged share = aged cube / cube on hand.
-- Inputs: capacity_inventory (source/capacity/inventory: one row per seller, storage type and week).
SELECT
  seller_id, storage_type,
  SUM(sold_cuft) / NULLIF(SUM(sold_cuft) + AVG(on_hand_cuft) * COUNT(*), 0) AS sell_through,
  SUM(aged_cuft) / NULLIF(SUM(on_hand_cuft), 0) AS aged_share,
  AVG(on_hand_cuft) AS on_hand_cuft
FROM capacity_inventory
WHERE week_ending > date_sub(DATE '{ds}', {weeks} * 7) AND week_ending <= DATE '{ds}'
GROUP BY seller_id, storage_type
