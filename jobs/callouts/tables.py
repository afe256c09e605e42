"""The callouts domain's tables (one place, so steps, jobs and tests agree)."""
from echelon.lake import Table

CATALOG = Table("reference", "callouts", "catalog")          # callouts servable on ds + 1
CLICK_STREAM = Table("source", "callouts", "click_stream")   # world mode: future clicks of ds's impressions
IMPRESSIONS = Table("raw", "callouts", "impressions")        # partition = day shown
CLICKS = Table("raw", "callouts", "clicks")                  # partition = day the click arrived
FEEDBACK = Table("features", "callouts", "feedback")         # matured impressions of the window ending ds
SERVING = Table("published", "callouts", "serving")          # what to show on ds + 1
