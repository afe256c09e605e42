"""Open Bandit Dataset (ZOZOTOWN, Apache-2.0) -> the callouts logs format, so the domain runs on real logs.

OBD: `<root>/<random|bts>/<all|men|women>/<campaign>.csv` with `timestamp, item_id, position, click,
propensity_score, user_feature_0..3, user-item_affinity_*` and `item_context.csv` (item_feature_0 numeric,
item_feature_1..3 hashed categories). Mapping: an item is a callout (`item07`), its hashed item_feature_1 is
its family, item_feature_0 its value; user_feature_0 (hashed) is the segment; the position is kept; there
is one layout ("default"); a click is logged at its impression's time (OBD records no click delay). The
four user features are also kept as `user_feature_0..3` (first 8 hex digits of each hash), for reward models
over impression features; `item_attributes` gives the items' four features.

CLI: echelon callouts obd --root ../shared/data/obd --policy random --campaign all --out DIR
     (writes DIR/impressions.csv, DIR/clicks.csv and DIR/catalog.csv, readable by ingest --logs and ope)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from echelon.callout_logs import parse_utc
from echelon.settings import PROJECT_ROOT

DEFAULT_ROOT = PROJECT_ROOT.parent / "shared" / "data" / "obd"


USER_FEATURES = [f"user_feature_{k}" for k in range(4)]


class OBDError(FileNotFoundError):
    """The Open Bandit Dataset folder is absent or not in the expected layout."""


def load(root: str | Path = DEFAULT_ROOT, policy: str = "random", campaign: str = "all"):
    """(catalog, impressions, clicks) of one behaviour policy and campaign."""
    folder = Path(root) / policy / campaign
    path = folder / f"{campaign}.csv"
    if not path.exists():
        raise OBDError(f"no Open Bandit Dataset log at {path} (expected <root>/<random|bts>/<all|men|women>/)")
    raw = pd.read_csv(path, index_col=0)
    items = pd.read_csv(folder / "item_context.csv", index_col=0)
    impressions = pd.DataFrame({
        "impression_id": [f"obd-{policy}-{campaign}-{k:06d}" for k in range(len(raw))],
        "segment": raw["user_feature_0"].astype(str).str[:8],
        "callout_id": raw["item_id"].map(lambda i: f"item{int(i):02d}"),
        "layout_id": "default",
        "position": raw["position"].astype(int),
        "propensity": raw["propensity_score"].astype(float),
        "shown_at": parse_utc(raw["timestamp"], "timestamp", str(path)),
        **{c: raw[c].astype(str).str[:8] for c in USER_FEATURES},
    })
    clicked = raw["click"].to_numpy() == 1
    clicks = pd.DataFrame({"impression_id": impressions["impression_id"][clicked].to_numpy(),
                           "clicked_at": impressions["shown_at"][clicked].to_numpy()})
    catalog = pd.DataFrame({"callout_id": items["item_id"].map(lambda i: f"item{int(i):02d}"),
                            "family": items["item_feature_1"].astype(str).str[:8],
                            "value": items["item_feature_0"].astype(float)})
    return catalog, impressions, clicks


def item_attributes(root: str | Path = DEFAULT_ROOT, policy: str = "random", campaign: str = "all") -> pd.DataFrame:
    """callout_id + item_feature_0 (numeric) and item_feature_1..3 (hashed categories, 8 hex digits)."""
    path = Path(root) / policy / campaign / "item_context.csv"
    if not path.exists():
        raise OBDError(f"no Open Bandit Dataset item context at {path}")
    items = pd.read_csv(path, index_col=0)
    out = pd.DataFrame({"callout_id": items["item_id"].map(lambda i: f"item{int(i):02d}"),
                        "item_feature_0": items["item_feature_0"].astype(float)})
    for c in ("item_feature_1", "item_feature_2", "item_feature_3"):
        out[c] = items[c].astype(str).str[:8]
    return out


def write(out: str | Path, catalog, impressions, clicks) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    catalog.to_csv(out / "catalog.csv", index=False)
    impressions.to_csv(out / "impressions.csv", index=False)
    clicks.to_csv(out / "clicks.csv", index=False)
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--root", default=str(DEFAULT_ROOT), help="the Open Bandit Dataset folder")
    parser.add_argument("--policy", default="random", choices=["random", "bts"], help="behaviour policy")
    parser.add_argument("--campaign", default="all", choices=["all", "men", "women"])
    parser.add_argument("--out", required=True, help="folder for impressions.csv, clicks.csv, catalog.csv")


def main(args: argparse.Namespace) -> int:
    catalog, impressions, clicks = load(args.root, args.policy, args.campaign)
    out = write(args.out, catalog, impressions, clicks)
    days = impressions["shown_at"].dt.date
    print(f"wrote {len(impressions)} impressions ({days.min()}..{days.max()}), {len(clicks)} clicks and "
          f"{len(catalog)} callouts to {out}")
    return 0
