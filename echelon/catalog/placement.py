"""The placement domain's tables (capacity reads the prices)."""
from echelon.catalog.table import Table

PLAN = Table("published", "placement", "placement_plan", suite="placement_plan",
             columns=("item_id", "facility_id", "speed", "target_units", "expected_cost"))
PRICES = Table("published", "placement", "capacity_prices", suite="placement_capacity_prices",
               columns=("facility_id", "resource", "shadow_price", "utilisation"))
