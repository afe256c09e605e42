"""The capacity domain's tables."""
from echelon.catalog.table import Table

INVENTORY = Table("source", "capacity", "inventory")   # sellers' weekly stock extract (world mode: synthetic)
REQUESTS = Table("source", "capacity", "requests")     # sellers' requests as they arrive
BASE_LIMITS = Table("published", "capacity", "base_limits", suite="capacity_base_limits")
RAW_REQUESTS = Table("raw", "capacity", "requests", suite="capacity_requests")
GRANTS = Table("published", "capacity", "grants", suite="capacity_grants")
ROUNDS = Table("published", "capacity", "rounds", suite="capacity_rounds")
STATEMENTS = Table("published", "capacity", "statements", suite="capacity_statements")     # open period: price-protected fee per grant
SETTLEMENTS = Table("published", "capacity", "settlements", suite="capacity_settlements")  # closed period: fee, credit, net per seller
