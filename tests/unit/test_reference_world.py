"""The shared reference world (echelon/reference_world.py): one lane geometry for every world that publishes
the network, and a publish that writes the reference tables only (stand-ins never replace a real producer's).
The retail world's network, sized from its sales, is tested through `echelon world` in test_world.py."""
import numpy as np
import pandas as pd

from echelon import lake, reference_world
from echelon.catalog.demand import ITEMS
from echelon.catalog.network import DELIVERY_LANES, FACILITIES


def test_lanes_follow_one_geometry():
    fc_xy = np.array([[0.0, 0.0], [1000.0, 0.0]])
    region_xy = np.array([[60.0, 80.0], [0.0, 600.0], [2000.0, 0.0]])   # 100, 600 and 2000 km from FC01
    dc_xy = np.array([[0.0, 400.0]])
    delivery, transfer = reference_world.lanes(["FC01", "FC02"], fc_xy, ["R01", "R02", "R03"], region_xy,
                                               ["DC01"], dc_xy)
    first = delivery[delivery["facility_id"] == "FC01"].set_index("region_id")
    assert first["distance_km"].tolist() == [100.0, 600.0, 2000.0]
    assert first["fastest_speed"].tolist() == ["same_day", "one_day", "two_day"]
    assert first["transit_days"].tolist() == [0, 1, 2]
    assert delivery["two_day"].all() and (delivery["one_day"] | ~delivery["same_day"]).all()
    assert np.allclose(delivery["cost_per_unit"], (1.0 + 0.002 * delivery["distance_km"]).round(3))
    assert len(delivery) == 2 * 3 and len(transfer) == 1 * 2
    assert transfer["distance_km"].tolist() == [400.0, round(float(np.hypot(1000.0, 400.0)), 1)]
    assert (transfer["lead_time_mean_days"] > 1.0).all()


def test_generated_worlds_use_the_shared_lanes_and_are_deterministic():
    one = reference_world.generate_tables(items=5, facilities=3, regions=2, seed=4)
    again = reference_world.generate_tables(items=5, facilities=3, regions=2, seed=4)
    pd.testing.assert_frame_equal(one["delivery_lanes"], again["delivery_lanes"])
    lanes = one["delivery_lanes"]
    assert list(lanes.columns) == ["facility_id", "region_id", "distance_km", "same_day", "one_day", "two_day",
                                   "cost_per_unit"]
    assert (lanes["same_day"] == (lanes["distance_km"] <= reference_world.SAME_DAY_KM)).all()
    assert (lanes["one_day"] == (lanes["distance_km"] <= reference_world.ONE_DAY_KM)).all()
    assert set(one["transfer_lanes"]["to_facility_id"]) == {"FC01", "FC02", "FC03"}


def test_publish_writes_reference_tables_and_stand_ins_never_replace_them(lake_dir):
    real = reference_world.generate_tables(items=4, facilities=2, regions=2, seed=1)
    written = reference_world.publish(real, "2026-11-20")
    assert sorted(written) == ["delivery_lanes", "facilities", "items", "transfer_lanes"]   # no summary, window
    stub = reference_world.stub_tables(items=3, sellers=2, seed=5)
    assert reference_world.publish(stub, "2026-11-22", only_missing=True) == {}
    assert lake.partitions(FACILITIES) == ["2026-11-20"] and lake.partitions(ITEMS) == ["2026-11-20"]
    assert lake.partitions(DELIVERY_LANES) == ["2026-11-20"]
    stored = lake.read(FACILITIES, "2026-11-20")
    pd.testing.assert_frame_equal(stored[list(real["facilities"].columns)], real["facilities"], check_dtype=False)
