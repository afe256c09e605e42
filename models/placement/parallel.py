"""Item subproblems, in process or in parallel through Spark: the same function either way.

Given capacity prices lambda (and, for primal recovery, each item's own capacity shares), the items are
independent LPs. `LocalSolver` solves them here; `SparkSolver` ships each partition of items to an
executor (`mapInPandas`), where the same `solve_block` builds and solves them with OR-Tools, so the job
scales out on a cluster unchanged. Both return the same arrays, ordered like `inst.item_ids`.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from echelon.models.placement import lp
from echelon.models.placement.instance import Instance

log = logging.getLogger(__name__)
PLAN_KEYS = ("x", "y", "served", "fcost", "dcost", "lost_units", "lost_cost")


def solve_block(inst: Instance, lam, caps=None, solver: str = "highs", with_plan: bool = False) -> dict:
    """Solve the items of `inst` at prices `lam`; per item: true cost, priced cost, usage [C] (+ plan)."""
    out = lp.solve_items(inst, lam=lam, caps=caps, solver=solver)
    result = {"cost": out["cost"], "priced": out["priced"], "usage": out["usage"]}
    if with_plan:
        result.update(lp.plan_parts(inst, out["values"]))
    return result


class LocalSolver:
    def __init__(self, inst: Instance, solver: str = "highs"):
        self.inst, self.solver = inst, solver

    def __call__(self, lam, caps=None, with_plan: bool = False) -> dict:
        return solve_block(self.inst, lam, caps, self.solver, with_plan)


def item_rows(inst: Instance, caps=None) -> pd.DataFrame:
    """One row per item: what an executor needs besides the (shared, small) network."""
    frame = pd.DataFrame({"item_id": inst.item_ids, "cube": inst.cube, "price": inst.price,
                          "demand": list(inst.demand.reshape(len(inst.item_ids), -1))})
    if caps is not None:
        frame["caps"] = list(np.asarray(caps, float))
    return frame


def _schema(with_caps: bool = False) -> str:
    base = "item_id string, cube double, price double, demand array<double>"
    return base + (", caps array<double>" if with_caps else "")


OUT_SCHEMA = ("item_id string, cost double, priced double, usage array<double>, x array<double>, "
              "y array<double>, served array<double>, fcost array<double>, dcost array<double>, "
              "lost_units double, lost_cost double")


def _executor_fn(network: dict, lam, solver: str, with_plan: bool):
    """The function each Spark task runs over its partition (all of it at once: one LP per chunk)."""
    def run(batches):
        frame = pd.concat(list(batches), ignore_index=True)
        if frame.empty:
            return
        R, K = len(network["region_ids"]), len(network["prob"])
        inst = Instance(item_ids=frame["item_id"].to_numpy(), cube=frame["cube"].to_numpy(),
                        price=frame["price"].to_numpy(),
                        demand=np.stack(frame["demand"].to_numpy()).reshape(len(frame), R, K), **network)
        caps = np.stack(frame["caps"].to_numpy()) if "caps" in frame.columns else None
        res = solve_block(inst, lam, caps, solver, with_plan)
        empty = [np.zeros(0)] * len(frame)
        out = pd.DataFrame({"item_id": frame["item_id"], "cost": res["cost"], "priced": res["priced"],
                            "usage": list(res["usage"])})
        for key in ("x", "y", "served", "fcost", "dcost"):
            out[key] = list(res[key].reshape(len(frame), -1)) if with_plan else empty
        for key in ("lost_units", "lost_cost"):
            out[key] = res[key] if with_plan else 0.0
        yield out
    return run


class SparkSolver:
    """Items partitioned once (cached), one Spark job per call."""

    def __init__(self, inst: Instance, spark, partitions: int | None = None, solver: str = "highs"):
        self.inst, self.spark, self.solver = inst, spark, solver
        self.partitions = partitions or max(1, min(len(inst.item_ids), spark.sparkContext.defaultParallelism * 2))
        self.rows = self._frame(None).cache()
        self.index = {item: n for n, item in enumerate(inst.item_ids)}

    def _frame(self, caps):
        frame = self.spark.createDataFrame(item_rows(self.inst, caps), schema=_schema(caps is not None))
        return frame.repartition(self.partitions, "item_id")

    def __call__(self, lam, caps=None, with_plan: bool = False) -> dict:
        t0 = time.time()
        rows = self.rows if caps is None else self._frame(caps)
        fn = _executor_fn(self.inst.network_arrays(), None if lam is None else np.asarray(lam), self.solver,
                          with_plan)
        got = rows.mapInPandas(fn, schema=OUT_SCHEMA).toPandas()
        if len(got) != len(self.inst.item_ids):
            raise lp.SolveError(f"Spark returned {len(got)} item solutions for {len(self.inst.item_ids)} items")
        got = got.iloc[np.argsort(got["item_id"].map(self.index).to_numpy())]
        N, F, D, R, K = self.inst.shape
        result = {"cost": got["cost"].to_numpy(), "priced": got["priced"].to_numpy(),
                  "usage": np.stack(got["usage"].to_numpy())}
        if with_plan:
            shapes = {"x": (N, F), "y": (N, D), "served": (N, F, 3), "fcost": (N, F, 3), "dcost": (N, D)}
            for key, shape in shapes.items():
                result[key] = np.stack(got[key].to_numpy()).reshape(shape)
            result["lost_units"], result["lost_cost"] = got["lost_units"].to_numpy(), got["lost_cost"].to_numpy()
        log.debug("spark subproblems: %d items in %.2fs", N, time.time() - t0)
        return result

    def close(self):
        self.rows.unpersist()
