"""Multi-echelon inventory placement: capacity-priced targets per item x facility x speed (issue 3)."""
