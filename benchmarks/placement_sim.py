"""The simulation's evidence: the optimised plan against the baselines a planner would otherwise use, and a
lead-time-aware plan against a lead-time-blind one on a network with unreliable lanes.

1. Plan vs baselines. A generated network (seed 1); the decomposition's plan; the baselines of
   `simulate.policies` (newsvendor per FC, cheapest FC per region, proportional split of the plan's units,
   a planner's own proportional split of pooled demand). Every policy is
   replayed day by day over `--days` days, `--replications` times, on the same demand and lead-time draws
   (gamma-Poisson demand from the forecast's distribution, lognormal vendor and transfer lead times, the DC
   tier stocked and capacitated). Table: mean and 95% t-interval per metric and policy.
2. Lead-time uncertainty. The same network with the transfer lanes into half of the FCs made unreliable
   (lead-time sd x `--spread`); plans solved with the FC safety term (`Params.fc_safety_z`, default) and
   without it (fc_safety_z = 0, the lead time seen only as the window's length), both replayed likewise;
   then again on the same network with room (`--loose` x the demand's cube), where the safety stock does
   not displace demand layers from the FCs.
Every policy is scaled into the facilities' storage before it is replayed (`simulate.fit_capacity`).

Writes benchmarks/results/placement_sim.{md,csv} and placement_sim.png, placement_sim_leadtime.png.

    python benchmarks/placement_sim.py --items 300 --facilities 8 --regions 10 --days 56 --replications 10
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.models.placement import lagrangian, plots, simulate
from echelon.models.placement.instance import Params, generate

KEY = ["shipping_cost", "shipping_cost_per_unit", "on_time_share", "on_time_same_day", "on_time_one_day",
       "on_time_two_day", "lost_units", "units_held_mean", "holding_cost", "transfer_cost", "total_cost",
       "fc_storage_overrun_days", "fc_storage_overrun_max", "dc_refused_units", "dc_stockout_item_days"]


def unreliable(inst, spread: float, seed: int = 7):
    """The instance with the lanes into a random half of the FCs given `spread` x their lead-time sd."""
    rng = np.random.default_rng(seed)
    F = len(inst.fc_ids)
    bad = np.zeros(F, bool)
    bad[rng.choice(F, F // 2, replace=False)] = True
    return replace(inst, transfer_lead_sd=np.where(bad[None, :], inst.transfer_lead_sd * spread,
                                                   inst.transfer_lead_sd)), bad


PAIRED = ["shipping_cost", "shipping_cost_per_unit", "on_time_share", "lost_units", "total_cost"]


def paired_table(diff: pd.DataFrame) -> str:
    """Paired differences as markdown: 'difference ± half-width (relative)'."""
    fmt = lambda v: f"{v:,.4f}" if abs(v) < 10 else f"{v:,.0f}"
    cells = [f"{fmt(d)} ± {fmt(h)} ({r:+.1%})" for d, h, r in zip(diff["difference"], diff["half_width"], diff["relative"])]
    return pd.DataFrame({"metric": diff["metric"], f"{diff['a'].iloc[0]} - {diff['b'].iloc[0]}": cells}).to_markdown(index=False)


def table(summary: pd.DataFrame) -> pd.DataFrame:
    """metric x policy, 'mean ± half-width'."""
    part = summary[summary["metric"].isin(KEY)].copy()
    fmt = lambda v: f"{v:,.4f}" if abs(v) < 10 else f"{v:,.0f}"
    part["cell"] = [f"{fmt(m)} ± {fmt(h)}" for m, h in zip(part["mean"], part["half_width"])]
    out = part.pivot(index="metric", columns="policy", values="cell").reindex(KEY)
    return out[list(dict.fromkeys(part["policy"]))]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300)
    parser.add_argument("--facilities", type=int, default=8)
    parser.add_argument("--regions", type=int, default=10)
    parser.add_argument("--days", type=int, default=56)
    parser.add_argument("--replications", type=int, default=10)
    parser.add_argument("--spread", type=float, default=4.0)
    parser.add_argument("--loose", type=float, default=1.5,
                        help="capacity tightness of the second lead-time study (room for the safety stock)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    began, load = time.time(), os.getloadavg()

    inst = generate(items=args.items, facilities=args.facilities, regions=args.regions, seed=1)
    result = lagrangian.solve(inst, max_iter=60, tol=1e-3)
    runs = simulate.replicate(inst, simulate.policies(inst, result.plan, uncapped=True), args.days,
                              args.replications, seed=1)
    summary = simulate.summarise(runs)
    plots.simulation(summary, args.out / "placement_sim.png")

    def lead_study(base, seed):
        """Plans with and without the FC lead-time safety term on `base` with unreliable lanes, replayed."""
        shaky, bad = unreliable(base, args.spread)
        aware = lagrangian.solve(shaky, max_iter=60, tol=1e-3).plan
        blind_inst = replace(shaky, params=replace(shaky.params, fc_safety_z=0.0))
        blind = lagrangian.solve(blind_inst, max_iter=60, tol=1e-3).plan
        pols = {"lead-time aware": simulate.policies(shaky, aware)["optimised"],
                "lead-time blind": simulate.policies(shaky, blind)["optimised"]}
        share = lambda plan: float(plan["x"][:, bad].sum() / max(plan["x"].sum(), 1e-9))
        note = (f"Share of FC stock at the unreliable FCs: aware {share(aware):.3f}, blind {share(blind):.3f}; "
                f"FC units: aware {aware['x'].sum():,.0f}, blind {blind['x'].sum():,.0f}.")
        lead_runs = simulate.replicate(shaky, pols, args.days, args.replications, seed=seed)
        diff = simulate.paired(lead_runs, "lead-time aware", "lead-time blind", PAIRED)
        return simulate.summarise(lead_runs), bad, note + "\n\nPaired (aware less blind, per replication):\n\n" + paired_table(diff)

    lead_summary, bad, lead_note = lead_study(inst, 2)
    plots.simulation(lead_summary, args.out / "placement_sim_leadtime.png")
    loose = generate(items=args.items, facilities=args.facilities, regions=args.regions, seed=1,
                     tightness=args.loose)
    loose_summary, _, loose_note = lead_study(loose, 3)

    both = pd.concat([summary.assign(study="baselines"), lead_summary.assign(study="lead_time"),
                      loose_summary.assign(study="lead_time_loose")])
    both.to_csv(args.out / "placement_sim.csv", index=False)
    seconds, after = time.time() - began, os.getloadavg()
    best = summary[summary["metric"] == "shipping_cost"].set_index("policy")["mean"]
    per_unit = summary[summary["metric"] == "shipping_cost_per_unit"].set_index("policy")["mean"]
    on_time = summary[summary["metric"] == "on_time_share"].set_index("policy")["mean"]
    baselines = [p for p in best.index if p not in ("optimised", "newsvendor_uncapped")]
    cheapest = min(baselines, key=lambda p: best[p])
    cheapest_unit = min(baselines, key=lambda p: per_unit[p])
    lines = [
        "# Placement: the simulation's evidence",
        "",
        f"Command: `python benchmarks/placement_sim.py --items {args.items} --facilities {args.facilities} "
        f"--regions {args.regions} --days {args.days} --replications {args.replications} --spread {args.spread}` "
        f"({seconds:.0f} s in all; 1-minute load {load[0]:.1f} before, {after[0]:.1f} after, shared 2-core machine).",
        "",
        f"Instance: generated, seed 1, {args.items} items x {args.facilities} FCs x "
        f"{len(inst.dc_ids)} DCs x {args.regions} regions, window {inst.window_days} days. Plan: "
        f"`lagrangian.solve` (gap {result.gap:.3%}, status {result.status}). Each policy replayed {args.days} days "
        f"x {args.replications} replications on common random numbers; cells are mean ± 95% t-interval "
        "half-width over replications. Costs over the whole run ($); `holding_cost` on units on hand.",
        "",
        "## Plan vs baselines",
        "",
        table(summary).to_markdown(),
        "",
        f"Shipping cost: optimised {best['optimised']:,.0f} vs the cheapest baseline ({cheapest}) "
        f"{best[cheapest]:,.0f}: the plan is {1 - best['optimised'] / best[cheapest]:.1%} lower "
        f"(on-time share {on_time['optimised']:.3f} vs {on_time[cheapest]:.3f}; target: >= 10% lower at an "
        "equal or higher on-time share). Per unit shipped: optimised "
        f"{per_unit['optimised']:.4f} vs the cheapest baseline per unit ({cheapest_unit}) "
        f"{per_unit[cheapest_unit]:.4f}: {1 - per_unit['optimised'] / per_unit[cheapest_unit]:.1%} lower (on-time "
        f"{on_time['optimised']:.3f} vs {on_time[cheapest_unit]:.3f}). Baselines are scaled into the facilities' "
        "storage (`simulate.fit_capacity`); `newsvendor_uncapped` is the newsvendor as computed, capacity "
        "ignored, for reference only (not a policy the network can hold).",
        "",
        "Against each baseline (target: shipping cost >= 10% lower at an equal or higher on-time share):",
        "",
        *[f"- {b}: the plan's shipping cost {1 - best['optimised'] / best[b]:.1%} lower in total, "
          f"{1 - per_unit['optimised'] / per_unit[b]:.1%} lower per unit; on-time {on_time['optimised']:.3f} vs "
          f"{on_time[b]:.3f}: " + ("met" if best['optimised'] <= 0.9 * best[b] and on_time['optimised'] >= on_time[b]
                                   else "not met") for b in baselines],
        "",
        "Paired differences, optimised less each baseline (per replication, same draws; ± 95% t-interval):",
        "",
        *[paired_table(simulate.paired(runs, "optimised", b, PAIRED)) + "\n" for b in baselines],
        "![plan vs baselines](placement_sim.png)",
        "",
        f"## Lead-time uncertainty: lanes into {int(bad.sum())} of {len(bad)} FCs with {args.spread:g}x the "
        "lead-time sd",
        "",
        lead_note,
        "",
        table(lead_summary).to_markdown(),
        "",
        "![lead-time aware vs blind](placement_sim_leadtime.png)",
        "",
        f"## The same with room: capacities {args.loose:g} x the demand's cube (tightness), unreliable lanes as above",
        "",
        loose_note,
        "",
        table(loose_summary).to_markdown(),
        "",
    ]
    (args.out / "placement_sim.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
