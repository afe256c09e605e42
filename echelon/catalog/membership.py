"""The membership domain's tables."""
from echelon.catalog.table import Table

PANEL = Table("source", "membership", "panel")    # the monthly choice extract (world mode: synthetic)
RAW_PANEL = Table("raw", "membership", "panel", suite="membership_panel")
TRANSITIONS = Table("features", "membership", "transitions", suite="membership_transitions")   # state -> action -> next state
SHARES = Table("published", "membership", "counterfactual_shares", suite="membership_counterfactual_shares",
               columns=("scenario", "segment", "month", "plan", "share", "revenue"))
BENEFIT_VALUES = Table("published", "membership", "benefit_values", suite="membership_benefit_values")   # the identification table
