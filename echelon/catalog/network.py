"""The shared reference network (regions, facilities, lanes): made by the reference world, read by
placement and capacity."""
from echelon.catalog.table import Table

REGIONS = Table("reference", "network", "regions")
FACILITIES = Table("reference", "network", "facilities")
DELIVERY_LANES = Table("reference", "network", "delivery_lanes")
TRANSFER_LANES = Table("reference", "network", "transfer_lanes")
