"""The callouts domain's tables, and the layout grid of the serving table's layout_id."""
from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from echelon.catalog.table import Table

if TYPE_CHECKING:
    import pandas as pd

# A layout is one level per component; its layout_id is 'h0-b1-i2-r0'. The policies (models/) and the
# synthetic world (jobs/) both enumerate it.
COMPONENTS = {"headline": 3, "body": 2, "image": 4, "reviews": 2}   # 3 * 2 * 4 * 2 = 48 layouts
WINDOW_DAYS = 3   # attribution: a click counts when it arrives within this many days after its impression

CATALOG = Table("reference", "callouts", "catalog", suite="callouts_catalog")        # callouts servable on ds + 1
CLICK_STREAM = Table("source", "callouts", "click_stream")                           # world mode: future clicks of ds's impressions
IMPRESSIONS = Table("raw", "callouts", "impressions", suite="callouts_impressions")  # partition = day shown
CLICKS = Table("raw", "callouts", "clicks", suite="callouts_clicks")                 # partition = day the click arrived
FEEDBACK = Table("features", "callouts", "feedback", suite="callouts_feedback")      # matured impressions of the window ending ds
SERVING = Table("published", "callouts", "serving", suite="callouts_serving")        # what to show on ds + 1


def all_layouts() -> pd.DataFrame:
    """Every layout: layout_id 'h0-b1-i2-r0' plus one integer column per component."""
    import pandas as pd   # here, not at the top: the DAG files import the catalog and must stay light

    grid = list(itertools.product(*[range(k) for k in COMPONENTS.values()]))
    frame = pd.DataFrame(grid, columns=list(COMPONENTS))
    frame.insert(0, "layout_id", [layout_id(row) for row in grid])
    return frame


def layout_id(levels) -> str:
    return "-".join(f"{name[0]}{level}" for name, level in zip(COMPONENTS, levels))


def parse_layout(lid: str) -> tuple[int, ...]:
    return tuple(int(part[1:]) for part in lid.split("-"))
