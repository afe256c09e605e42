"""Membership benchmark (issue 19): Deep PQR, the static logit and behaviour cloning fitted on one world
(seed 1) and judged on a held-out world (seed 2: customers never seen in training).

pqr: the published estimator (P and Q stages neural, the R stage's expectation under the estimated
transitions the counterfactual re-solves with: PQR.simulator_reward); pqr_neural_r: the all-neural reward (the R
network's regression of that expectation), re-solved the same way. pqr_exact: the same P stage with the Q and R stages solved exactly on the discrete state space with the
transitions counted from the panel (pqr.exact_reward). Reported per method: held-out log-likelihood per choice (Deep PQR: the policy re-solved under its reward;
the static logit and behaviour cloning share the P stage's policy), reward recovery on the held-out states
(correlation and relative RMSE of the member actions' r(s,a) against the truth), the mean absolute error of
the 24-month plan shares (segments x months x plans, percentage points) under three scenarios against the
truth, and the fitting time. Writes benchmarks/results/membership_bench.{md,csv}.

    .venv/bin/python benchmarks/membership_bench.py [--train-seed 1] [--customers 3000] [--months 24] [--accelerator cpu]

Train seed S, held-out seed S + 1; results in membership_bench.md for seed 1, membership_bench_seed{S}.md otherwise.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd

from echelon.jobs.membership import world
from echelon.membership_mdp import Space, attach_next, estimate_dynamics, features, soft_bellman, transitions
from echelon.models.membership import analysis, pqr
from echelon.models.membership import counterfactual as cf

RESULTS = Path(__file__).resolve().parent / "results"
SCENARIOS = Path(__file__).resolve().parents[1] / "models" / "membership" / "scenarios"
BENCH_SCENARIOS = ("monthly_price_rise", "annual_price_cut", "new_digital_benefit")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=3000)
    parser.add_argument("--heldout-customers", type=int, default=2000)
    parser.add_argument("--months", type=int, default=24)
    parser.add_argument("--accelerator", default="cpu")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    load_before = os.getloadavg()
    seed = args.train_seed
    train_panel = world.panel(seed, args.customers, args.months, "2026-11-30")
    rows = attach_next(train_panel)
    started = time.perf_counter()
    model = pqr.fit_pqr(rows, pqr.FitConfig(beta=world.BETA, accelerator=args.accelerator))
    fit_seconds = time.perf_counter() - started

    held = world.panel(seed + 1, args.heldout_customers, args.months, "2026-11-30")
    space = Space(world.CELLS)
    truth = world.true_reward(space)
    index = space.locate(held)
    actions = pqr.action_codes(held["action"])
    dynamics = estimate_dynamics(rows)
    x_space = features(space.frame())
    P = transitions(space, dynamics)
    simulator = model.simulator_reward(x_space, P)
    resolved = soft_bellman(simulator, P, world.BETA)[2]
    resolved_neural = soft_bellman(model.reward(x_space), P, world.BETA)[2]
    true_pi = soft_bellman(truth, transitions(space, world.dynamics()), world.BETA)[2]
    lp_policy = model.log_policy(features(held))
    ll = {"pqr": pqr.log_likelihood(np.log(resolved[index]), actions),
          "pqr_neural_r": pqr.log_likelihood(np.log(resolved_neural[index]), actions), "static": pqr.log_likelihood(lp_policy, actions),
          "bc": pqr.log_likelihood(lp_policy, actions), "truth": pqr.log_likelihood(np.log(true_pi[index]), actions)}

    x = x_space[index]
    recovery = {}
    exact = pqr.exact_reward(model.log_policy(x_space), transitions(space, dynamics), world.BETA)
    resolved_exact = soft_bellman(exact, transitions(space, dynamics), world.BETA)[2]
    ll["pqr_exact"] = pqr.log_likelihood(np.log(resolved_exact[index]), actions)
    for name, estimate in (("pqr", simulator[index]), ("pqr_neural_r", model.reward(x)), ("pqr_exact", exact[index]),
                           ("static", pqr.static_reward(model, x))):
        e, t = estimate[:, 1:].ravel(), truth[index][:, 1:].ravel()
        recovery[name] = (float(np.corrcoef(e, t)[0, 1]), float(np.sqrt(np.mean((e - t) ** 2) / np.mean(t ** 2))))

    last = held[held["month"] == held["month"].max()].reset_index(drop=True)
    setting = analysis.Setting(world.CELLS, world.STATUS_QUO, world.BETA, dynamics, last,
                               analysis.panel_choices(space, train_panel))
    ident, info = analysis.identification(model, setting, truth, world.VALUE)

    def true_policy(s):
        one = Space([s.prices])
        P = transitions(one, world.dynamics())
        return cf.solve(world.true_reward(one, extra_dollars=cf.benefit_dollars(one, s, world.VALUE)), P, world.BETA), P

    scenarios = [cf.load_scenario(SCENARIOS / f"{name}.yaml") for name in BENCH_SCENARIOS]
    frame = analysis.run_scenarios(model, setting, scenarios, info, truth=true_policy)
    errors = analysis.scenario_errors(frame).pivot(index="method", columns="scenario", values="share_error_pp")

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    methods = analysis.METHODS
    table = pd.DataFrame({
        "method": list(methods),
        "heldout_ll": [ll[m] for m in methods],
        "reward_corr": [recovery[m][0] if m in recovery else np.nan for m in methods],
        "reward_rel_rmse": [recovery[m][1] if m in recovery else np.nan for m in methods],
        **{f"err_pp_{s}": [errors.loc[m, s] for m in methods] for s in BENCH_SCENARIOS},
    })
    stem = "membership_bench" if seed == 1 else f"membership_bench_seed{seed}"
    table.to_csv(out / f"{stem}.csv", index=False)
    if seed == 1:
        ident.to_csv(out / "membership_benefit_values.csv", index=False)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    lines = [f"# Membership benchmark (commit {commit})", "",
             f"Train world seed {seed}: {args.customers} customers x {args.months} months ({len(rows)} choices); held-out world "
             f"seed {seed + 1}: {args.heldout_customers} customers never seen. beta = {world.BETA}. Fit (P, Q, R, {args.accelerator}): "
             f"{fit_seconds:.1f} s; load average before {load_before[0]:.1f}, after {os.getloadavg()[0]:.1f} (2 cores, shared).",
             f"Held-out log-likelihood of the true policy: {ll['truth']:.4f}.", "",
             "| method | held-out LL | reward corr | reward rel. RMSE | " + " | ".join(f"{s} (pp)" for s in BENCH_SCENARIOS) + " |",
             "|---|---|---|---|" + "---|" * len(BENCH_SCENARIOS)]
    for r in table.itertuples():
        cells = [f"{r.heldout_ll:.4f}", "n/a" if np.isnan(r.reward_corr) else f"{r.reward_corr:.3f}",
                 "n/a" if np.isnan(r.reward_rel_rmse) else f"{r.reward_rel_rmse:.3f}"]
        cells += [f"{getattr(r, f'err_pp_{s}'):.2f}" for s in BENCH_SCENARIOS]
        lines.append(f"| {r.method} | " + " | ".join(cells) + " |")
    lines += ["", "Price sensitivity alpha per segment (true / Deep PQR / Deep PQR neural R / PQR exact Q, R / static): " + "; ".join(
        f"{g}: {info['alpha']['true'][i]:.3f} / {info['alpha']['pqr'][i]:.3f} / {info['alpha']['pqr_neural_r'][i]:.3f} / "
        f"{info['alpha']['pqr_exact'][i]:.3f} / "
        f"{info['alpha']['static'][i]:.3f}"
        for i, g in enumerate(("urban_digital", "urban_shipping", "rural_digital", "rural_shipping"))),
        "", "Identification table ($ a member-month of high use):", "", ident.to_markdown(index=False)]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
