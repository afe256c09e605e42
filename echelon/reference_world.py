"""The shared reference world: the network (regions, facilities, lanes) and the items that placement and
capacity read, made in one place for every domain's world generator.

Three sizes of the same world, one lane geometry:
- `network_from_sales`: the retail world's network (`echelon world`, jobs/demand/world.py), capacities sized
  from the sales it must carry (`region_day_totals`): total FC outbound flow 85% of the network's busiest
  day over the last year of history, total FC storage 28 days of the average daily cube sold; DCs hold 60
  days of cube and can ship 90% of the busiest day.
- `generate_tables`: a seeded network, items table and demand summary of any size, for placement's
  generated instances (`placement solve --generate`, benchmarks) and its demo world (jobs/placement/world.py).
- `stub_tables`: the smallest items and facilities that a capacity round needs when demand and placement
  have not published (jobs/capacity/world.stub_upstream: tests and offline demos).
All three draw from seeded NumPy generators on the driver (the network is small) and build their lanes
with `lanes`: delivery FC -> region (distance, the promise speeds met, cost) and transfer DC -> FC
(cost and lead time). `publish` writes any of them under the catalog's reference tables:
- reference/network/regions         region_id, x_km, y_km (a synthetic map), demand_share.
- reference/network/facilities      facility_id, facility_type (DC|FC), echelon (1 = DC, 2 = FC),
                                    region_id (where it stands), x_km, y_km, storage_capacity_cuft,
                                    flow_capacity_units_per_day (outbound), vendor_lead_time_mean_days
                                    and vendor_lead_time_std_days (DCs only; null for FCs).
- reference/network/delivery_lanes  FC -> region: facility_id, region_id, distance_km, same_day,
                                    one_day, two_day (bool: promise speeds the FC meets there; every
                                    FC meets two_day everywhere), fastest_speed, transit_days,
                                    cost_per_unit.
- reference/network/transfer_lanes  DC -> FC: from_facility_id, to_facility_id, distance_km,
                                    cost_per_unit, lead_time_mean_days, lead_time_std_days.
- reference/demand/items            item_id, cube_cuft, price (+ category, seller_id, launch_date in the
                                    retail world, whose items come with its demand: jobs/demand/world.py).
(The generated and stub worlds publish the subsets of these columns that placement and capacity read.)

Plumbing beside echelon/lake.py, not under jobs/: placement's instance generator (models/) and the world
jobs (jobs/) both build on it. Callouts', damage's and membership's worlds read no reference table.
"""
from __future__ import annotations

import datetime as dt
import math
import zlib
from typing import Callable

import numpy as np
import pandas as pd

from echelon import lake
from echelon.catalog.demand import ITEMS
from echelon.catalog.network import DELIVERY_LANES, FACILITIES, REGIONS, TRANSFER_LANES

# The reference tables by the names the generators return them under (publish order).
TABLES = {"items": ITEMS, "regions": REGIONS, "facilities": FACILITIES, "delivery_lanes": DELIVERY_LANES,
          "transfer_lanes": TRANSFER_LANES}
NETWORK = ("regions", "facilities", "delivery_lanes", "transfer_lanes")

# Sizing rules of the retail world's network (see the module docstring).
FC_FLOW_SHARE_OF_PEAK = 0.85
FC_STORAGE_COVER_DAYS = 28
DC_FLOW_SHARE_OF_PEAK = 0.90
DC_STORAGE_COVER_DAYS = 60
SAME_DAY_KM, ONE_DAY_KM = 120.0, 700.0
MAP_KM = (3000.0, 1500.0)   # a synthetic map: region centres are uniform on it


def facility_ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{k + 1:02d}" for k in range(n)]


def lanes(fc_ids: list[str], fc_xy: np.ndarray, region_ids: list[str], region_xy: np.ndarray,
          dc_ids: list[str], dc_xy: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Delivery lanes (every FC to every region) and transfer lanes (every DC to every FC) from the map."""
    dist = np.hypot(fc_xy[:, None, 0] - region_xy[None, :, 0], fc_xy[:, None, 1] - region_xy[None, :, 1])
    delivery = pd.DataFrame({
        "facility_id": np.repeat(fc_ids, len(region_ids)),
        "region_id": np.tile(region_ids, len(fc_ids)),
        "distance_km": dist.reshape(-1).round(1),
    })
    delivery["same_day"] = delivery["distance_km"] <= SAME_DAY_KM
    delivery["one_day"] = delivery["distance_km"] <= ONE_DAY_KM
    delivery["two_day"] = True   # a national network: every FC reaches every region in two days
    delivery["fastest_speed"] = np.select([delivery["same_day"], delivery["one_day"]], ["same_day", "one_day"],
                                          "two_day")
    delivery["transit_days"] = np.select([delivery["same_day"], delivery["one_day"]], [0, 1], 2).astype("int32")
    delivery["cost_per_unit"] = (1.0 + 0.002 * delivery["distance_km"]).round(3)

    dist_dc = np.hypot(dc_xy[:, None, 0] - fc_xy[None, :, 0], dc_xy[:, None, 1] - fc_xy[None, :, 1]).reshape(-1)
    lead_mean = 1.0 + dist_dc / 400.0
    transfer = pd.DataFrame({
        "from_facility_id": np.repeat(dc_ids, len(fc_ids)), "to_facility_id": np.tile(fc_ids, len(dc_ids)),
        "distance_km": dist_dc.round(1), "cost_per_unit": (0.25 + 0.0006 * dist_dc).round(3),
        "lead_time_mean_days": lead_mean.round(2), "lead_time_std_days": (0.2 + 0.15 * lead_mean).round(2),
    })
    return delivery, transfer


# ----------------------------------------------------------------------------------------------
# The retail world's network, sized from its sales
# ----------------------------------------------------------------------------------------------

def region_day_totals(spark, sales, items) -> pd.DataFrame:
    """Units and cubic feet sold per region and day (small: regions x days), as pandas."""
    from pyspark.sql import functions as F

    cube = items.select("item_id", "cube_cuft")
    totals = (sales.join(F.broadcast(cube), "item_id")
              .groupBy("location_id", "timestamp")
              .agg(F.sum("target").alias("units"), F.sum(F.col("target") * F.col("cube_cuft")).alias("cube")))
    return totals.toPandas()


def network_from_sales(region_day: pd.DataFrame, seed: int, locations: int, n_fcs: int,
                       n_dcs: int) -> dict[str, pd.DataFrame]:
    """Regions, facilities and lanes, with capacities sized from the sales they must carry.

    `region_day`: location_id, timestamp, units, cube (units sold and their cubic feet per region and
    day); `locations` regions are expected in it."""
    rng = np.random.default_rng([seed, 7])
    regions = sorted(region_day["location_id"].unique())
    if len(regions) != locations:
        raise ValueError(f"expected sales in {locations} regions, found {len(regions)}: {regions}")
    last_year = region_day[region_day["timestamp"] > max(region_day["timestamp"]) - dt.timedelta(days=365)]
    by_day = last_year.groupby("timestamp")[["units", "cube"]].sum()
    peak_units = float(by_day["units"].max())
    mean_cube = float(by_day["cube"].mean())
    share = last_year.groupby("location_id")["units"].sum()
    share = (share / share.sum()).reindex(regions).fillna(0.0)

    # Region centres on the map, FCs near their home region, DCs inland.
    xy = rng.uniform([0.0, 0.0], MAP_KM, size=(len(regions), 2))
    region_table = pd.DataFrame({"region_id": regions, "x_km": xy[:, 0].round(1), "y_km": xy[:, 1].round(1),
                                 "demand_share": share.to_numpy().round(6)})

    n_fc, n_dc = n_fcs, n_dcs
    fc_home = np.arange(n_fc) % len(regions)
    fc_xy = xy[fc_home] + rng.normal(0.0, 25.0, size=(n_fc, 2))
    fcs_in_region = np.bincount(fc_home, minlength=len(regions))
    weight = share.to_numpy()[fc_home] / fcs_in_region[fc_home] * rng.uniform(0.75, 1.25, n_fc)
    weight = weight / weight.sum() if weight.sum() > 0 else np.full(n_fc, 1.0 / n_fc)
    dc_home = rng.choice(len(regions), size=n_dc, replace=n_dc > len(regions))
    dc_xy = xy[dc_home] + rng.normal(0.0, 150.0, size=(n_dc, 2))

    fc_ids, dc_ids = facility_ids("FC", n_fc), facility_ids("DC", n_dc)
    fcs = pd.DataFrame({
        "facility_id": fc_ids, "facility_type": "FC", "echelon": 2,
        "region_id": [regions[r] for r in fc_home],
        "x_km": fc_xy[:, 0].round(1), "y_km": fc_xy[:, 1].round(1),
        "storage_capacity_cuft": np.maximum(1.0, np.ceil(FC_STORAGE_COVER_DAYS * mean_cube * weight)),
        "flow_capacity_units_per_day": np.maximum(1.0, np.ceil(FC_FLOW_SHARE_OF_PEAK * peak_units * weight)),
        "vendor_lead_time_mean_days": np.nan, "vendor_lead_time_std_days": np.nan,
    })
    vendor_mean = rng.uniform(10.0, 21.0, n_dc).round(1)
    dcs = pd.DataFrame({
        "facility_id": dc_ids, "facility_type": "DC", "echelon": 1,
        "region_id": [regions[r] for r in dc_home],
        "x_km": dc_xy[:, 0].round(1), "y_km": dc_xy[:, 1].round(1),
        "storage_capacity_cuft": max(1.0, math.ceil(DC_STORAGE_COVER_DAYS * mean_cube / n_dc)),
        "flow_capacity_units_per_day": max(1.0, math.ceil(DC_FLOW_SHARE_OF_PEAK * peak_units / n_dc)),
        "vendor_lead_time_mean_days": vendor_mean, "vendor_lead_time_std_days": (0.25 * vendor_mean).round(2),
    })
    facilities = pd.concat([dcs, fcs], ignore_index=True)
    facilities["echelon"] = facilities["echelon"].astype("int32")
    delivery, transfer = lanes(fc_ids, fc_xy, regions, xy, dc_ids, dc_xy)
    return {"regions": region_table, "facilities": facilities, "delivery_lanes": delivery,
            "transfer_lanes": transfer}


# ----------------------------------------------------------------------------------------------
# Generated worlds of any size (placement instances and demos)
# ----------------------------------------------------------------------------------------------

def generate_tables(items: int = 50, facilities: int = 6, regions: int = 4, seed: int = 42,
                    dcs: int | None = None, tightness: float = 0.8, window: int = 10) -> dict[str, pd.DataFrame]:
    """Seeded network tables (the `network` contract's shapes), an items table and a demand summary.

    Capacities: total FC storage is `tightness` x the cube of the network's expected window demand,
    total FC flow `tightness / 0.8 * 0.85` x its mean daily units, split over FCs with +-50% noise, so
    some FCs bind and others are slack."""
    rng = np.random.default_rng([seed, 3])
    F, R = facilities, regions
    D = dcs or max(1, F // 5)
    region_ids = [f"R{r + 1:02d}" for r in range(R)]
    fc_ids, dc_ids = facility_ids("FC", F), facility_ids("DC", D)
    rxy = rng.uniform([0, 0], MAP_KM, size=(R, 2))
    fxy = rxy[np.arange(F) % R] + rng.normal(0, 40, size=(F, 2))
    dxy = rxy[rng.integers(0, R, D)] + rng.normal(0, 150, size=(D, 2))
    delivery, transfer = lanes(fc_ids, fxy, region_ids, rxy, dc_ids, dxy)
    delivery = delivery[["facility_id", "region_id", "distance_km", "same_day", "one_day", "two_day", "cost_per_unit"]]
    transfer = transfer.drop(columns="distance_km")

    item_ids = [f"I{n:06d}" for n in range(items)]
    cube = np.exp(rng.normal(np.log(0.3), 0.9, items)).round(3)
    price = np.exp(rng.normal(np.log(25.0), 0.8, items)).round(2)
    rate = np.exp(rng.normal(np.log(2.0), 1.2, items))                       # units/day, all regions
    share = rng.dirichlet(np.full(R, 2.0))
    region_rate = rate[:, None] * share[None, :] * rng.uniform(0.5, 1.5, (items, R))
    mean = region_rate * window
    sd = np.sqrt(mean) * rng.uniform(1.0, 2.0, (items, R))                   # over-dispersed counts
    summary = pd.DataFrame({"item_id": np.repeat(item_ids, R), "region_id": np.tile(region_ids, items),
                            "mean": mean.ravel(), "sd": sd.ravel()})

    fc_weight = share[np.arange(F) % R] / np.bincount(np.arange(F) % R, minlength=R)[np.arange(F) % R]
    fc_weight = fc_weight * rng.uniform(0.5, 1.5, F)
    fc_weight /= fc_weight.sum()
    total_cube = float((mean.sum(axis=1) * cube).sum())
    daily_units = float(mean.sum()) / window
    facilities_table = pd.concat([
        pd.DataFrame({"facility_id": dc_ids, "facility_type": "DC", "echelon": 1,
                      "storage_capacity_cuft": np.ceil(2.0 * total_cube / D),
                      "flow_capacity_units_per_day": np.ceil(1.2 * daily_units / D),
                      "vendor_lead_time_mean_days": rng.uniform(10, 21, D).round(1)}),
        pd.DataFrame({"facility_id": fc_ids, "facility_type": "FC", "echelon": 2,
                      "storage_capacity_cuft": np.ceil(tightness * total_cube * fc_weight),
                      "flow_capacity_units_per_day": np.ceil(tightness / 0.8 * 0.85 * daily_units * fc_weight),
                      "vendor_lead_time_mean_days": np.nan})], ignore_index=True)
    facilities_table["vendor_lead_time_std_days"] = 0.25 * facilities_table["vendor_lead_time_mean_days"]
    items_table = pd.DataFrame({"item_id": item_ids, "cube_cuft": cube, "price": price})
    return {"facilities": facilities_table, "delivery_lanes": delivery, "transfer_lanes": transfer,
            "items": items_table, "summary": summary, "window": window}


def stub_tables(items: int = 24, sellers: int = 6, seed: int = 42) -> dict[str, pd.DataFrame]:
    """The smallest reference a capacity round runs on: `items` toys of `sellers` sellers, one region with
    a DC and two FCs (no lanes: capacity reads only facilities' capacities)."""
    rng = np.random.default_rng([seed, zlib.crc32(b"stub")])
    ids = [f"I{k:05d}" for k in range(items)]
    item_table = pd.DataFrame({"item_id": ids, "category": "toys",
                               "cube_cuft": np.round(rng.lognormal(np.log(0.5), 0.8, items), 3),
                               "price": np.round(rng.lognormal(np.log(25.0), 0.5, items), 2),
                               "seller_id": [f"S{k % sellers:04d}" for k in range(items)],
                               "launch_date": dt.date(2024, 1, 1)})
    facilities = pd.DataFrame({"facility_id": ["DC01", "FC01", "FC02"], "facility_type": ["DC", "FC", "FC"],
                               "echelon": [1, 2, 2], "region_id": "R01", "storage_capacity_cuft": [90000.0, 30000.0, 20000.0],
                               "flow_capacity_units_per_day": [5000.0, 3000.0, 2000.0]})
    return {"items": item_table, "facilities": facilities}


def publish(tables: dict[str, pd.DataFrame], ds: str, publish_one: Callable | None = None,
            only_missing: bool = False) -> dict[str, dict]:
    """Publish the reference tables among `tables` (by their names in TABLES; other entries, such as a
    generated demand summary, are not reference tables and are left out) under partition ds.
    `publish_one(frame, table)` replaces lake.publish (a world's logging wrapper); `only_missing` writes a
    table only when it has no partition yet (stand-ins that must not replace a real producer's)."""
    publish_one = publish_one or (lambda frame, table: lake.publish(frame, table, ds))
    manifests = {}
    for name, table in TABLES.items():
        if name in tables and not (only_missing and lake.partitions(table)):
            manifests[name] = publish_one(tables[name], table)
    return manifests
