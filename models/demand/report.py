"""The run report: one small HTML page per partition with data volume, gate results, the backtest table
against the baselines and fan charts. Written to <reports>/demand/ds=<ds>/index.html."""
from __future__ import annotations

import functools
import html
import json
from pathlib import Path

import pandas as pd

from echelon import lake, settings
from echelon.catalog.demand import FEATURES, FORECASTS, RAW_PLAN, RAW_SALES
from echelon.expectations.gate import docs_index, recorded

TABLES = [RAW_SALES, RAW_PLAN, FEATURES, FORECASTS]
report_dir = functools.partial(settings.report_dir, "demand")


def _table(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, border=0, classes="t", float_format=lambda v: f"{v:,.4f}")


def build(ds: str) -> Path:
    ds = lake.parse_ds(ds)
    folder = report_dir(ds)
    folder.mkdir(parents=True, exist_ok=True)
    volume = pd.DataFrame([{"table": str(t), "rows": m["rows"], "columns": len(m["schema"]),
                            "checksum": m["checksum"][:12], "published_at": m["published_at"]}
                           for t in TABLES if lake.exists(t, ds) for m in [lake.read_manifest(t, ds)]])
    gates = pd.DataFrame([{"suite": g["suite"], "table": g["table"], "rows": g["rows"],
                           "passed": f"{g['evaluated'] - len(g['failures'])}/{g['evaluated']}",
                           "result": "PASS" if g["success"] else "FAIL"} for g in recorded(ds)])
    backtest_path = folder / "backtest.csv"
    backtest = pd.read_csv(backtest_path) if backtest_path.exists() else pd.DataFrame()
    promotion_path = folder / "promotion.json"
    promotion = json.loads(promotion_path.read_text()) if promotion_path.exists() else {}
    images = sorted(p.name for p in folder.glob("*.png"))
    parts = [
        f"<h1>demand_nightly, partition {ds}</h1>",
        "<h2>Data volume</h2>", _table(volume) if len(volume) else "<p>no tables published</p>",
        "<h2>Gates</h2>", _table(gates) if len(gates) else "<p>no gate results recorded</p>",
        f'<p>Great Expectations Data Docs: <a href="{docs_index().as_uri()}">{html.escape(str(docs_index()))}</a></p>',
        "<h2>Backtest (last 28 days before the partition, same window for every model)</h2>",
        _table(backtest) if len(backtest) else "<p>no retraining in this run (weekly cadence): see the champion's "
                                              "run in MLflow</p>",
        "<h2>Promotion</h2>", f"<pre>{html.escape(json.dumps(promotion, indent=2))}</pre>" if promotion else "<p>none</p>",
        "<h2>Charts</h2>", *[f'<h3>{html.escape(name)}</h3><img src="{name}" style="max-width:100%">' for name in images],
    ]
    style = ("<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
             "table.t{border-collapse:collapse;font-size:13px}table.t td,table.t th{padding:3px 8px;"
             "border-bottom:1px solid #ddd;text-align:right}</style>")
    page = folder / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>demand {ds}</title>{style}</head>"
                    f"<body>{''.join(parts)}</body></html>")
    return page
