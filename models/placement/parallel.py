"""Item subproblems, in process or in parallel through Spark: the same function either way.

Given capacity prices lambda (or each item's own capacity shares), the items are independent.
`LocalSolver` solves them here; `SparkSolver` ships each partition of items to an executor
(`mapInPandas`), where the same `solve_block` solves them (method "fast": fastsub's NumPy solver with a
certified lower bound, the exact LP for the items it leaves open; "lp": every item's LP with OR-Tools),
so the job scales out on a cluster unchanged. Both return the same arrays, ordered like `inst.item_ids`.
"""
from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd

from echelon.models.placement import lp
from echelon.models.placement.instance import Instance

log = logging.getLogger(__name__)
PLAN_KEYS = ("x", "y", "dc_out", "transfer", "served", "zcost", "lost_units", "lost_cost")   # lp.parts_from_values
METHODS = ("fast", "lp")


def solve_block(inst: Instance, lam, caps=None, solver: str = "highs", with_plan: bool = False,
                method: str = "fast", exact_gap: float | None = None, lp_budget_s: float | None = None) -> dict:
    """Solve the items of `inst` at prices `lam` (or within per-item capacity shares `caps`, by LP); per
    item: true cost, priced cost, a lower bound on the priced optimum, usage [C] (+ the plan's parts)."""
    if method not in METHODS:
        raise ValueError(f"unknown subproblem method {method!r}; choose one of {METHODS}")
    if method == "fast" and caps is None:
        from echelon.models.placement import fastsub

        out = fastsub.solve(inst, lam, exact_gap=exact_gap, solver=solver, lp_budget_s=lp_budget_s)
        result = {k: out[k] for k in ("cost", "priced", "lower", "usage", "exact")}
        parts = out["parts"]
    else:
        out = lp.solve_items(inst, lam=lam, caps=caps, solver=solver)
        result = {"cost": out["cost"], "priced": out["priced"], "lower": out["priced"], "usage": out["usage"],
                  "exact": np.ones(len(inst.item_ids), bool)}
        parts = lp.parts_from_values(inst, out["values"]) if with_plan else {}
    if with_plan:
        result.update({k: parts[k] for k in PLAN_KEYS})
    return result


class LocalSolver:
    def __init__(self, inst: Instance, solver: str = "highs", method: str = "fast"):
        self.inst, self.solver, self.method = inst, solver, method

    def __call__(self, lam, caps=None, with_plan: bool = False, exact_gap: float | None = None,
                 lp_budget_s: float | None = None) -> dict:
        return solve_block(self.inst, lam, caps, self.solver, with_plan, self.method, exact_gap, lp_budget_s)


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


OUT_SCHEMA = ("item_id string, cost double, priced double, lower double, exact boolean, usage array<double>, "
              + ", ".join(f"{k} array<double>" for k in PLAN_KEYS[:-2]) + ", lost_units double, lost_cost double")


def _executor_fn(network: dict, lam, solver: str, with_plan: bool, method: str, exact_gap, lp_budget_s=None):
    """The function each Spark task runs over its partition (all of it at once, as `solve_block`)."""
    def run(batches):
        frame = pd.concat(list(batches), ignore_index=True)
        if frame.empty:
            return
        R, K = len(network["region_ids"]), len(network["prob"])
        inst = Instance(item_ids=frame["item_id"].to_numpy(), cube=frame["cube"].to_numpy(),
                        price=frame["price"].to_numpy(),
                        demand=np.stack(frame["demand"].to_numpy()).reshape(len(frame), R, K), **network)
        caps = np.stack(frame["caps"].to_numpy()) if "caps" in frame.columns else None
        res = solve_block(inst, lam, caps, solver, with_plan, method, exact_gap, lp_budget_s)
        empty = [np.zeros(0)] * len(frame)
        out = pd.DataFrame({"item_id": frame["item_id"], "cost": res["cost"], "priced": res["priced"],
                            "lower": res["lower"], "exact": res["exact"], "usage": list(res["usage"])})
        for key in PLAN_KEYS[:-2]:
            out[key] = list(res[key].reshape(len(frame), -1)) if with_plan else empty
        for key in ("lost_units", "lost_cost"):
            out[key] = res[key] if with_plan else 0.0
        yield out
    return run


class SparkSolver:
    """Items partitioned once (cached), one Spark job per call."""

    def __init__(self, inst: Instance, spark, partitions: int | None = None, solver: str = "highs",
                 method: str = "fast"):
        self.inst, self.spark, self.solver, self.method = inst, spark, solver, method
        self.partitions = partitions or max(1, min(len(inst.item_ids), spark.sparkContext.defaultParallelism * 2))
        self.rows = self._frame(None).cache()
        self.index = {item: n for n, item in enumerate(inst.item_ids)}

    def _frame(self, caps):
        frame = self.spark.createDataFrame(item_rows(self.inst, caps), schema=_schema(caps is not None))
        return frame.repartition(self.partitions, "item_id")

    def __call__(self, lam, caps=None, with_plan: bool = False, exact_gap: float | None = None,
                 lp_budget_s: float | None = None) -> dict:
        """(`lp_budget_s` is per executor task here: each partition closes its own widest items.)"""
        t0 = time.time()
        rows = self.rows if caps is None else self._frame(caps)
        fn = _executor_fn(self.inst.network_arrays(), None if lam is None else np.asarray(lam), self.solver,
                          with_plan, self.method, exact_gap, lp_budget_s)
        got = rows.mapInPandas(fn, schema=OUT_SCHEMA).toPandas()
        if len(got) != len(self.inst.item_ids):
            raise lp.SolveError(f"Spark returned {len(got)} item solutions for {len(self.inst.item_ids)} items")
        got = got.iloc[np.argsort(got["item_id"].map(self.index).to_numpy())]
        N, F, D, R, K = self.inst.shape
        result = {"cost": got["cost"].to_numpy(), "priced": got["priced"].to_numpy(),
                  "lower": got["lower"].to_numpy(), "exact": got["exact"].to_numpy(),
                  "usage": np.stack(got["usage"].to_numpy())}
        if with_plan:
            shapes = {"x": (N, F), "y": (N, D), "dc_out": (N, D), "transfer": (N, F), "served": (N, F, 3),
                      "zcost": (N, F, 3)}
            for key, shape in shapes.items():
                result[key] = np.stack(got[key].to_numpy()).reshape(shape)
            result["lost_units"], result["lost_cost"] = got["lost_units"].to_numpy(), got["lost_cost"].to_numpy()
        log.debug("spark subproblems: %d items in %.2fs", N, time.time() - t0)
        return result

    def close(self):
        self.rows.unpersist()
