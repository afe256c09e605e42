"""Callouts' bad inputs fail with a message naming them, and nothing already published is lost.

Where each case the issue lists is tested (so that no case needs a Spark world of its own):
- at the level of the lake, on the world tests/dag/test_callouts_e2e.py publishes through the DAG anyway:
  propensities of zero, missing or above one and duplicate impression ids (the impressions gate, through
  the ingest job), a click for an unknown impression and a click before its impression (the clicks gate),
  a serving-table callout the catalog no longer has (the serving gate), an empty day of logs (ingest);
  each leaves every published partition of the date byte-identical (manifest checksum);
- here, on the pure functions, without Spark or a lake: the logs-folder reader's selection of the day
  (what makes a day empty), its parsing of timestamp columns that mix formats (and its refusal, by
  name, of a missing or unparseable one) and off-policy evaluation's own refusal of bad propensities (also
  tests/unit/test_callouts_ope.py)."""
import numpy as np
import pandas as pd
import pytest

from echelon.jobs.callouts import ingest
from echelon.models.callouts import ope

DS = "2026-11-20"


def write(folder, impressions, clicks=None):
    folder.mkdir(parents=True, exist_ok=True)
    impressions.to_csv(folder / "impressions.csv", index=False)
    if clicks is not None:
        clicks.to_csv(folder / "clicks.csv", index=False)
    return folder


def impressions(shown_at):
    return pd.DataFrame({"impression_id": ["i0", "i1", "i2"], "segment": "s1", "callout_id": ["c0", "c1", "c0"],
                         "layout_id": "h0-b0-i0-r0", "position": 1, "propensity": 0.5,
                         "shown_at": pd.to_datetime(shown_at, utc=True)})


def test_the_logs_reader_keeps_the_rows_of_the_day(tmp_path):
    shown = [f"{DS} 10:00", "2026-11-19 23:59", f"{DS} 00:00"]
    clicks = pd.DataFrame({"impression_id": ["i0", "i1"],
                           "clicked_at": pd.to_datetime([f"{DS} 11:00", "2026-11-19 23:59"], utc=True)})
    catalog, imps, clks = ingest.from_logs(DS, write(tmp_path / "logs", impressions(shown), clicks))
    assert imps["impression_id"].tolist() == ["i0", "i2"] and clks["impression_id"].tolist() == ["i0"]
    assert sorted(catalog["callout_id"]) == ["c0"] and (catalog["family"] == "unknown").all()


def test_the_logs_reader_parses_mixed_timestamp_formats(tmp_path):
    """One column mixing ISO 8601 variants (microseconds + offset, `T` + `Z`, no seconds, another offset)
    and a non-ISO spelling: pandas' single inferred format used to raise on the second row."""
    shown = [f"{DS} 10:00:00.123456+00:00", f"{DS}T11:00:00Z", f"{DS} 12:00", "2026-11-21T01:30:00+09:00",
             "2026-11-20T23:30:00-01:00"]   # the last two are 16:30 on DS and 00:30 on the 21st in UTC
    logs = pd.DataFrame({"impression_id": [f"i{k}" for k in range(5)], "segment": "s1", "callout_id": "c0",
                         "layout_id": "h0-b0-i0-r0", "position": 1, "propensity": 0.5, "shown_at": shown})
    clicks = pd.DataFrame({"impression_id": ["i0", "i1", "i2"],
                           "clicked_at": [f"{DS}T10:05:00Z", f"{DS} 11:30:00.5+00:00", "20 Nov 2026 13:00"]})
    _, imps, clks = ingest.from_logs(DS, write(tmp_path / "logs", logs, clicks))
    assert imps["impression_id"].tolist() == ["i0", "i1", "i2", "i3"]
    assert str(imps["shown_at"].dtype) == "datetime64[us, UTC]"
    assert imps.loc[3, "shown_at"] == pd.Timestamp(f"{DS} 16:30", tz="UTC")
    assert clks["impression_id"].tolist() == ["i0", "i1", "i2"]
    assert clks.loc[2, "clicked_at"] == pd.Timestamp(f"{DS} 13:00", tz="UTC")


@pytest.mark.parametrize("bad", ["not a time", None])
def test_an_unparseable_or_missing_timestamp_is_rejected_by_name(tmp_path, bad):
    logs = impressions([f"{DS} 10:00", f"{DS} 11:00", f"{DS} 12:00"]).astype({"shown_at": object})
    logs.loc[1, "shown_at"] = bad
    with pytest.raises(ingest.IngestError, match=r"impressions: 1 missing or unparseable `shown_at` values \(rows \[1\]"):
        ingest.from_logs(DS, write(tmp_path / "logs", logs))


def test_an_empty_day_of_logs_is_rejected_by_name(tmp_path):
    folder = write(tmp_path / "logs", impressions(["2026-11-19 10:00", "2026-11-21 00:00", "2026-11-19 00:00"]))
    with pytest.raises(ingest.IngestError, match=f"empty day of logs: no impressions shown on {DS} in .*impressions"):
        ingest.from_logs(DS, folder)


@pytest.mark.parametrize("bad", [0.0, np.nan, 1.5, -0.2])
def test_off_policy_evaluation_refuses_bad_propensities(bad):
    logs = pd.DataFrame({"segment": ["a", "a"], "callout_id": ["c0", "c1"], "layout_id": "l", "reward": [1, 0],
                         "propensity": [0.5, bad]})
    with pytest.raises(ope.OPEError, match=r"1 logged propensities outside \(0, 1\]"):
        ope.check_logs(logs, ["segment", "callout_id", "layout_id"])
    ope.check_logs(logs.assign(propensity=[0.5, 1.0]), ["segment", "callout_id", "layout_id"])   # (0, 1] is fine
