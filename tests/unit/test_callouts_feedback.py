"""Delayed feedback (Spark job): an impression is counted on the day it matures, exactly once; pending
impressions are never counted as non-clicks; a click counts wherever it arrives inside the window."""
import datetime as dt

import pandas as pd

from echelon import lake
from echelon.jobs.callouts import feedback
from echelon.catalog.callouts import CLICKS, IMPRESSIONS
from echelon.catalog.callouts import WINDOW_DAYS

DAYS = [dt.date(2026, 11, 10) + dt.timedelta(days=k) for k in range(6)]   # 3 mature, 3 still pending


def test_each_impression_counts_once_on_the_day_it_matures(lake_dir, spark):
    # one impression per day at noon; the one of day 0 is clicked 2.5 days later (after the partition
    # date it was shown on), the one of day 1 is clicked after its window closed
    for k, day in enumerate(DAYS):
        shown = pd.Timestamp(f"{day} 12:00", tz="UTC")
        lake.publish(pd.DataFrame({"impression_id": [f"i{k}"], "segment": "s", "callout_id": "c", "layout_id": "l",
                                   "position": 1, "propensity": 0.5, "shown_at": [shown]})
                     .astype({"shown_at": "datetime64[us, UTC]"}), IMPRESSIONS, day.isoformat())
    arrivals = {DAYS[2]: ("i0", f"{DAYS[2]} 23:00"), DAYS[4]: ("i1", f"{DAYS[4]} 13:00")}
    for day in DAYS:
        rows = [arrivals[day]] if day in arrivals else []
        frame = pd.DataFrame(rows, columns=["impression_id", "clicked_at"])
        frame["clicked_at"] = pd.to_datetime(frame["clicked_at"], utc=True).astype("datetime64[us, UTC]")
        lake.publish(frame, CLICKS, day.isoformat())
    seen = {}
    for day in DAYS:
        rows = feedback.build(spark, day.isoformat(), history=1).toPandas()   # today's maturing only
        for r in rows.itertuples():
            assert r.impression_id not in seen, f"{r.impression_id} counted twice"
            seen[r.impression_id] = (r.matured_on, r.click)
    shown_day = {f"i{k}": d for k, d in enumerate(DAYS)}
    for impression, (matured_on, click) in seen.items():
        assert matured_on == shown_day[impression] + dt.timedelta(days=WINDOW_DAYS)
    assert seen["i0"][1] == 1                      # the late-arriving click counts, on its maturity day
    assert seen["i1"][1] == 0                      # a click after the window does not
    assert set(seen) == {f"i{k}" for k in range(len(DAYS) - WINDOW_DAYS)}   # the rest are still pending
    window = feedback.build(spark, DAYS[-1].isoformat(), history=28).toPandas()
    assert sorted(window["impression_id"]) == sorted(seen) and window["click"].sum() == 1
