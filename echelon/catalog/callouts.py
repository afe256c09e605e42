"""The callouts domain's tables."""
from echelon.catalog.table import Table

WINDOW_DAYS = 3   # attribution: a click counts when it arrives within this many days after its impression

CATALOG = Table("reference", "callouts", "catalog", suite="callouts_catalog")        # callouts servable on ds + 1
CLICK_STREAM = Table("source", "callouts", "click_stream")                           # world mode: future clicks of ds's impressions
IMPRESSIONS = Table("raw", "callouts", "impressions", suite="callouts_impressions")  # partition = day shown
CLICKS = Table("raw", "callouts", "clicks", suite="callouts_clicks")                 # partition = day the click arrived
FEEDBACK = Table("features", "callouts", "feedback", suite="callouts_feedback")      # matured impressions of the window ending ds
SERVING = Table("published", "callouts", "serving", suite="callouts_serving")        # what to show on ds + 1
