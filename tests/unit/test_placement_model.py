"""The placement model's known answers: newsvendor, decomposition = monolithic, prices, capacities,
bad generator specs (the simulator's tests: test_placement_sim.py)."""
import json

import numpy as np
import pytest

from echelon.models.placement import lagrangian, lp
from echelon.models.placement.instance import Instance, Params, generate, parse_generate


def single_fc(demand, lost=20.0, hold=2.0):
    """One item, one FC, one DC, one region: capacities far from binding."""
    K = len(demand)
    params = Params(scenarios=K, hold_cuft_day=hold / 10, capital_rate=0.0, dc_hold_share=0.0,
                    lost_sale_share=0.0, lost_sale_fixed=lost)
    return Instance(item_ids=np.array(["A"]), fc_ids=np.array(["FC01"]), dc_ids=np.array(["DC01"]),
                    region_ids=np.array(["R01"]), cube=np.array([1.0]), price=np.array([10.0]),
                    demand=np.array(demand, float).reshape(1, 1, K), prob=np.full(K, 1 / K), window_days=10,
                    ship_cost=np.array([[1.0]]), meets=np.ones((1, 1, 3), bool), transfer_cost=np.array([[0.5]]),
                    dc_cover=np.array([0.0]), fc_storage=np.array([1e6]), fc_flow=np.array([1e6]),
                    dc_storage=np.array([1e6]), dc_flow=np.array([1e6]), params=params)


@pytest.mark.parametrize("lost,expected_rank", [(20.0, 5), (4.5, 2), (7.5, 4)])
def test_single_fc_single_item_is_the_newsvendor(lost, expected_rank):
    demand = [30.0, 10.0, 50.0, 20.0, 40.0]
    inst = single_fc(demand, lost=lost)
    # A unit of target costs holding h = 2 over the window whether sold or not; a sale saves the lost-sale
    # penalty less shipping and refill (1.5). Stock up while P(D > x) (pi - c) > h: F(x*) >= 1 - h / (pi - c).
    under, over = lost - 1.5, 2.0
    fractile = 1 - over / under
    expected = np.sort(demand)[int(np.ceil(fractile * len(demand))) - 1]
    assert np.sort(demand)[expected_rank - 1] == expected          # the case really tests what it says
    for result in (lagrangian.monolithic(inst), lagrangian.solve(inst)):
        assert result.plan["x"][0, 0] == pytest.approx(expected, abs=1e-6)


@pytest.fixture(scope="module", params=[(24, 4, 3, 1), (40, 5, 3, 7)])
def pair(request):
    n, f, r, seed = request.param
    inst = generate(items=n, facilities=f, regions=r, seed=seed)
    return inst, lagrangian.monolithic(inst), lagrangian.solve(inst, max_iter=60, tol=1e-4, subproblems="fast")


def test_decomposition_matches_the_monolithic_optimum(pair):
    inst, mono, dec = pair
    assert dec.bound <= mono.objective * (1 + 1e-7)                  # a valid dual bound
    assert mono.objective <= dec.objective * (1 + 1e-7)              # the recovered plan is a feasible plan
    assert dec.objective == pytest.approx(mono.objective, rel=1e-3)  # within 0.1%
    assert dec.gap <= 1e-3 and dec.status in ("optimal", "gap_limit")


def test_recovered_plan_respects_every_capacity(pair):
    inst, mono, dec = pair
    assert (dec.usage <= inst.capacity * (1 + 1e-7) + 1e-7).all()
    assert dec.max_capacity_violation(inst) <= 1e-7
    # the plan's own arrays agree with the usage it reports
    assert np.allclose(dec.plan["usage"].sum(axis=0), dec.usage)


def test_prices_are_zero_on_slack_and_positive_on_binding_capacities(pair):
    inst, mono, dec = pair
    util = mono.usage / inst.capacity
    slack, binding = util < 0.98, mono.prices > 1e-3
    assert slack.any() and binding.any()                              # the instance has both kinds
    assert np.allclose(dec.prices[slack], 0.0, atol=1e-6)
    assert (dec.prices[binding] > 0).all()


def test_infeasible_capacity_still_gives_a_feasible_plan_with_the_shortfall():
    inst = generate(items=20, facilities=4, regions=3, seed=2, tightness=0.05)
    result = lagrangian.solve(inst, max_iter=40, tol=1e-3)
    assert result.max_capacity_violation(inst) <= 1e-7
    demand = (inst.demand * inst.prob).sum()
    assert result.plan["lost_units"].sum() > 0.5 * demand           # most demand cannot be served
    assert (result.prices[: len(inst.fc_ids)] > 0).all()              # every FC's storage is priced


def test_subproblem_chunks_are_independent():
    inst = generate(items=10, facilities=3, regions=2, seed=4)
    lam = np.linspace(0.0, 2.0, len(inst.capacity))
    whole = lp.solve_items(inst, lam=lam, chunk=64)
    split = lp.solve_items(inst, lam=lam, chunk=3)
    assert np.allclose(whole["priced"], split["priced"], rtol=1e-7, atol=1e-6)


@pytest.mark.parametrize("spec", ["items=0", "items=ten", "stores=3", "items=5,seed"])
def test_bad_generate_spec_is_rejected(spec):
    with pytest.raises(ValueError, match="--generate"):
        parse_generate(spec)


def test_generated_solve_writes_plan_and_summary(tmp_path):
    from echelon.models.placement.solve import run_generated

    summary = run_generated({"items": 8, "facilities": 3, "regions": 2, "seed": 3}, "lagrangian", tmp_path)
    written = json.loads((tmp_path / "summary.json").read_text())
    for key in ("objective", "bound", "gap", "seconds", "method", "status", "max_capacity_violation"):
        assert key in written
    assert written["bound"] <= written["objective"] + 1e-6 and written["max_capacity_violation"] <= 1e-7
    assert (tmp_path / "plan.parquet").exists() and (tmp_path / "convergence.png").exists()
    assert summary["method"] == "lagrangian"


# --- the fast subproblem solver (fastsub): certified bound, exact where it claims, LP where needed -----

def _random_prices(inst, seed, scale=1.0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0.0, scale, len(inst.capacity)) * (rng.uniform(size=len(inst.capacity)) < 0.6)


@pytest.mark.parametrize("n,f,r,seed", [(30, 4, 3, 11), (25, 6, 4, 12), (20, 8, 5, 13)])
def test_fast_subproblems_bracket_the_lp_optimum_and_close_it_on_request(n, f, r, seed):
    inst = generate(items=n, facilities=f, regions=r, seed=seed)
    from echelon.models.placement import fastsub

    for lam in (None, _random_prices(inst, seed), _random_prices(inst, seed + 1, 3.0)):
        exact = lp.solve_items(inst, lam=lam)["priced"]                  # build(lam) solved by HiGHS, per item
        fast = fastsub.solve(inst, lam)
        tol = 1e-7 * np.maximum(1.0, np.abs(exact))
        assert (fast["lower"] <= exact + tol).all()                     # a valid bound, item by item
        assert (fast["priced"] >= exact - tol).all()                    # a feasible plan, item by item
        # the plan's parts (x, y, flows) cost and use what its layers were priced at
        layers = fastsub.layered(inst, lam)
        cost, use = lp.cost_and_usage(inst, layers["parts"])
        assert np.allclose(cost + use @ (np.zeros(len(inst.capacity)) if lam is None else lam),
                           layers["layered_priced"], rtol=1e-9)
        closed = fastsub.solve(inst, lam, exact_gap=0.0)
        assert np.allclose(closed["priced"], exact, rtol=1e-6, atol=1e-6)
        assert np.allclose(closed["lower"], exact, rtol=1e-6, atol=1e-6)


def test_fast_certificate_closes_for_one_region_and_speed():
    # One demand stream per item: the layered plan is the newsvendor on a network and its dual matches.
    inst = generate(items=30, facilities=5, regions=1, seed=21, params=Params(speed_mix=(0.0, 0.0, 1.0)))
    from echelon.models.placement import fastsub

    for seed in range(3):
        lam = _random_prices(inst, seed, 2.0)
        fast = fastsub.solve(inst, lam, ascent=0)
        exact = lp.solve_items(inst, lam=lam)["priced"]
        assert np.allclose(fast["lower"], fast["priced"], rtol=1e-6)
        assert np.allclose(fast["priced"], exact, rtol=1e-6)
        assert not fast["exact"].any()                                   # no LP was needed


def test_fast_subproblems_send_non_comonotone_items_to_the_lp():
    inst = generate(items=12, facilities=4, regions=3, seed=22)
    inst.demand[3, 1] = inst.demand[3, 1][::-1].copy()                   # region 1 falls as the others rise
    from echelon.models.placement import fastsub

    lam = _random_prices(inst, 5)
    fast = fastsub.solve(inst, lam)
    assert fast["exact"][3] and fast["exact"].sum() == 1
    exact = lp.solve_items(inst, lam=lam)["priced"]
    assert fast["priced"][3] == pytest.approx(exact[3], rel=1e-7)
    assert (fast["lower"] <= exact + 1e-7 * np.abs(exact)).all()


def test_lagrangian_bound_never_exceeds_the_monolithic_optimum(pair):
    inst, mono, dec = pair
    from echelon.models.placement import fastsub

    for seed in range(4):
        lam = _random_prices(inst, seed, 5.0 * seed)
        bound = fastsub.solve(inst, lam)["lower"].sum() - lam @ inst.capacity
        assert bound <= mono.objective * (1 + 1e-9)
    assert all(h["best_bound"] <= mono.objective * (1 + 1e-9) for h in dec.history)


def test_lp_subproblems_still_match_the_monolithic_optimum():
    inst = generate(items=16, facilities=4, regions=3, seed=9)
    mono = lagrangian.monolithic(inst)
    dec = lagrangian.solve(inst, max_iter=60, tol=1e-4, subproblems="lp")
    assert dec.bound <= mono.objective * (1 + 1e-7) <= dec.objective * (1 + 2e-7)
    assert dec.objective == pytest.approx(mono.objective, rel=1e-3)
    assert dec.max_capacity_violation(inst) <= 1e-7


def test_recovery_rebuilds_dropped_columns_exactly():
    # With few item plans kept, the final combination re-solves the columns it needs; the plan must still
    # fit every capacity and cost what the master said (a dropped "lose everything" column once came back
    # as the zero-price plan and broke the capacities).
    inst = generate(items=20, facilities=4, regions=3, seed=2, tightness=0.05)
    kept = lagrangian.solve(inst, max_iter=40, tol=1e-3, keep=1, lp_recovery_items=0)   # the combination only
    full = lagrangian.solve(inst, max_iter=40, tol=1e-3, lp_recovery_items=0)
    assert kept.max_capacity_violation(inst) <= 1e-7
    assert kept.objective == pytest.approx(full.objective, rel=1e-9)
    assert kept.history[-2]["objective"] == pytest.approx(kept.objective, rel=1e-7)


# --- the smoothed response and the large-instance path (sample prices, smoothed columns, box) --------

def test_smoothed_response_is_a_feasible_plan_whose_usage_is_the_dual_gradient():
    from echelon.models.placement import fastsub

    inst = generate(items=15, facilities=5, regions=3, seed=31)
    lam = _random_prices(inst, 3, 2.0)
    exact = fastsub.solve(inst, lam)
    value, parts = fastsub.smoothed(inst, lam, 0.01)
    cost, use = lp.cost_and_usage(inst, parts)
    priced = cost + use @ lam
    tol = 1e-6 * np.abs(exact["priced"])
    assert (value <= exact["priced"] + tol).all()             # a soft minimum is below the exact minimum
    assert (priced >= exact["lower"] - tol).all()             # the spread plan is a plan: never below the bound
    assert np.allclose(use.sum(axis=0)[inst.capacity > 0] > 0, True)
    # every unit of demand is stocked-and-served or lost, in expectation
    demand = (inst.demand * inst.prob).sum(axis=(1, 2))
    assert np.allclose(parts["served"].sum(axis=(1, 2)) + parts["lost_units"], demand, rtol=1e-5)
    # the value's derivative in each price is the plan's use of that capacity (what L-BFGS relies on)
    h = 3e-3                                                  # the costs are float32: not smaller
    for c in np.flatnonzero(use.sum(axis=0) > 0)[:6]:
        up, down = lam.copy(), lam.copy()
        up[c] += h
        down[c] = max(0.0, down[c] - h)
        slope = (fastsub.smoothed(inst, up, 0.01)[0].sum() - fastsub.smoothed(inst, down, 0.01)[0].sum()) / (up[c] - down[c])
        assert slope == pytest.approx(use[:, c].sum(), rel=3e-3)
    # colder is closer to the exact response
    cold = lp.cost_and_usage(inst, fastsub.smoothed(inst, lam, 1e-4)[1])
    assert (cold[0] + cold[1] @ lam).sum() == pytest.approx(exact["priced"].sum(), rel=1e-3)


def test_a_sample_scales_every_capacity_by_its_share_of_items():
    inst = generate(items=40, facilities=5, regions=3, seed=32)
    part = lagrangian.sample(inst, 10, seed=1)
    assert len(part.item_ids) == 10 and set(part.item_ids) <= set(inst.item_ids)
    assert np.allclose(part.capacity, inst.capacity * 0.25)


def test_large_instance_path_gives_valid_bounds_and_a_feasible_plan(pair):
    inst, mono, _ = pair
    dec = lagrangian.solve(inst, max_iter=30, tol=1e-3, subproblems="fast", prices="smoothed",
                           sample_items=len(inst.item_ids) // 2)
    assert dec.bound <= mono.objective * (1 + 1e-7) <= dec.objective * (1 + 1e-7)
    assert dec.max_capacity_violation(inst) <= 1e-7
    assert all(h["best_bound"] <= mono.objective * (1 + 1e-9) for h in dec.history)


def test_sample_prices_start_far_above_the_zero_price_bound_where_capacity_binds():
    # several FCs per region (close substitutes) and tight capacity: the case cutting planes start badly
    inst = generate(items=1200, facilities=12, regions=3, seed=33, tightness=0.5)
    zero = lagrangian.solve(inst, max_iter=1, subproblems="fast")
    warm = lagrangian.solve(inst, max_iter=3, tol=1e-3, subproblems="fast", prices="smoothed", sample_items=400)
    assert warm.history[0]["bound"] > zero.history[0]["bound"] * 1.05
    assert warm.max_capacity_violation(inst) <= 1e-7
    assert warm.bound <= warm.objective


def test_item_chunks_on_threads_give_what_one_thread_gives(monkeypatch):
    from echelon.models.placement import fastsub

    inst = generate(items=40, facilities=5, regions=3, seed=34)
    lam = _random_prices(inst, 4, 2.0)
    N, F, D, R, K = inst.shape
    cells = F * R * 3 * K * 7                                   # 7 items per chunk: six chunks
    runs = {}
    for threads in (1, 3):
        monkeypatch.setattr(fastsub, "THREADS", threads)
        runs[threads] = (fastsub.layered(inst, lam, chunk_cells=cells), fastsub.smoothed(inst, lam, 0.01, chunk_cells=cells))
    (layers_1, (value_1, soft_1)), (layers_3, (value_3, soft_3)) = runs[1], runs[3]
    assert np.array_equal(layers_1["lower"], layers_3["lower"]) and np.array_equal(value_1, value_3)
    for key in layers_1["parts"]:
        assert np.array_equal(layers_1["parts"][key], layers_3["parts"][key])
        assert np.array_equal(soft_1[key], soft_3[key])
    assert layers_1["parts"]["x"].sum() > 0


def test_tightened_certificates_rise_and_stay_below_each_items_optimum():
    # the large-instance path raises its final bound this way: it must stay a bound, item by item
    from echelon.models.placement import fastsub

    inst = generate(items=25, facilities=6, regions=4, seed=12)
    raised = 0.0
    for seed in range(3):
        lam = _random_prices(inst, seed, 3.0)
        fast = fastsub.solve(inst, lam)
        exact = lp.solve_items(inst, lam=lam)["priced"]
        items = fastsub.widest_open(fast["priced"], fast["lower"], 1.0)
        lower = fastsub.tighten(inst, lam, fast["priced"], fast["lower"], items, steps=40)
        assert (lower >= fast["lower"]).all()
        assert (lower <= exact + 1e-7 * np.maximum(1.0, np.abs(exact))).all()
        raised += lower.sum() - fast["lower"].sum()
    assert raised > 0                                           # some certificate was open, and rose


# --- any network shape: the strategy, the known optimum across shapes, bounded LP work, memory -----------

@pytest.mark.parametrize("n,f,r,seed", [(30, 2, 6, 41), (30, 9, 2, 42), (16, 6, 9, 43)])
def test_decomposition_reaches_the_monolithic_optimum_across_network_shapes(n, f, r, seed):
    inst = generate(items=n, facilities=f, regions=r, seed=seed, tightness=0.6)
    mono = lagrangian.monolithic(inst)
    dec = lagrangian.solve(inst, max_iter=80, tol=1e-3)
    assert dec.bound <= mono.objective * (1 + 1e-7) <= dec.objective * (1 + 1e-7)
    assert dec.objective <= mono.objective * 1.005                    # within 0.5% of the optimum
    assert dec.max_capacity_violation(inst) <= 1e-7


def test_wide_network_on_the_smoothed_path_brackets_the_optimum():
    inst = generate(items=40, facilities=16, regions=4, seed=44, tightness=0.6)
    assert len(inst.capacity) > lagrangian.KELLEY_CAPACITIES
    assert lagrangian.strategy(inst, subproblems="fast").prices == "smoothed"
    mono = lagrangian.monolithic(inst)
    dec = lagrangian.solve(inst, max_iter=40, tol=1e-3, subproblems="fast")
    assert dec.bound <= mono.objective * (1 + 1e-7) <= dec.objective * (1 + 1e-7)
    assert dec.objective <= mono.objective * 1.01
    assert dec.max_capacity_violation(inst) <= 1e-7


def test_strategy_follows_the_network_not_the_item_count():
    narrow = generate(items=50, facilities=4, regions=3, seed=1)
    wide = generate(items=200, facilities=40, regions=3, seed=1)
    assert lagrangian.strategy(narrow).subproblems == "lp" and lagrangian.strategy(narrow).prices == "kelley"
    # 200 items on a network with 2 x (40 + 8) priced capacities: fast items, smoothed prices
    many = lagrangian.strategy(wide)
    assert len(wide.capacity) > lagrangian.KELLEY_CAPACITIES
    assert (many.subproblems, many.prices) == ("fast", "smoothed") and "priced capacities" in many.reason
    # many items on a narrow network: fast items, still cutting planes
    assert lagrangian.strategy(generate(items=2000, facilities=4, regions=3, seed=1)).prices == "kelley"


def test_lp_budget_bounds_the_item_lps_an_iteration_runs():
    from echelon.models.placement import fastsub

    inst = generate(items=60, facilities=6, regions=5, seed=45)
    lam = _random_prices(inst, 3, scale=0.5)
    free = fastsub.solve(inst, lam, exact_gap=0.0, ascent=0)
    capped = fastsub.solve(inst, lam, exact_gap=0.0, ascent=0, lp_budget_s=0.0)
    assert free["exact"].sum() > 0                                   # the case has open certificates
    assert capped["exact"].sum() == (~fastsub.comonotone_order(inst)[2]).sum()   # only what must go to LP
    assert (capped["lower"] <= free["lower"] + 1e-7).all()           # less closed, still a valid bound


def test_monolithic_says_up_front_when_it_will_not_fit():
    inst = generate(items=200, facilities=20, regions=40, seed=1)
    size = lp.monolithic_size(inst)
    assert size["nonzeros"] > 0 and size["memory_gb"] == pytest.approx(size["nonzeros"] * lp.KB_PER_NONZERO / 1024 ** 2)
    with pytest.raises(lp.TooLarge, match=r"needs ~[\d.]+ GB .* 0\.5 GB is available"):
        lagrangian.monolithic(inst, memory_gb=0.5)


def test_unreliable_lanes_raise_stock_where_they_lead():
    from dataclasses import replace

    inst = generate(items=40, facilities=4, regions=3, seed=46)
    base = lagrangian.monolithic(inst).plan["x"]
    shaky_sd = inst.transfer_lead_sd.copy()
    shaky_sd[:, 0] *= 6.0                                            # the lanes into FC 0 become unreliable
    shaky = replace(inst, transfer_lead_sd=shaky_sd)
    assert shaky.fc_safety[0] > inst.fc_safety[0] and np.allclose(shaky.fc_safety[1:], inst.fc_safety[1:])
    moved = lagrangian.monolithic(shaky)
    # FC 0 holds more stock per unit it ships (its safety term), and the fast subproblems agree with the LP
    flow = lambda plan: plan["served"].sum(axis=2)[:, 0].sum()
    assert moved.plan["x"][:, 0].sum() / max(flow(moved.plan), 1e-9) > base[:, 0].sum() / max(
        flow(lagrangian.monolithic(inst).plan), 1e-9)
    fast = lagrangian.solve(shaky, max_iter=60, tol=1e-4, subproblems="fast")
    assert fast.objective == pytest.approx(moved.objective, rel=2e-3)


def test_lp_work_within_a_budget_runs_in_measured_chunks():
    from echelon.models.placement import fastsub

    seen = []
    done = fastsub.within(np.arange(300), float("inf"), seen.append)
    assert np.array_equal(done, np.arange(300)) and len(seen[0]) == 4     # a small first chunk, then measured
    assert max(len(c) for c in seen) <= 64
    assert len(fastsub.within(np.arange(300), 0.0, seen.append)) == 0     # no budget, no work


def test_polish_re_solves_items_within_their_own_shares_and_never_worsens_the_plan():
    # the large-instance path's last step: layered plans (stock kept apart per demand layer) re-solved by LP
    # inside each item's own usage, so the plan still fits every capacity and only gets cheaper
    from echelon.models.placement import fastsub
    from echelon.models.placement.parallel import PLAN_KEYS

    inst = generate(items=20, facilities=6, regions=12, seed=46)          # many regions: stock worth pooling
    lam = _random_prices(inst, 4, scale=0.3)
    fast = fastsub.solve(inst, lam)
    best = {**{k: fast["parts"][k] for k in PLAN_KEYS}, "cost": fast["cost"], "usage": fast["usage"]}
    exact = lp.solve_items(inst, lam=lam)["priced"]
    assert fast["priced"].sum() > exact.sum() * (1 + 1e-4)          # the layered plans leave something
    bound = float(fast["lower"].sum() - lam @ inst.capacity)
    polished, solved = lagrangian.polish(inst, best, lam, fast["lower"], bound, tol=0.0, budget_s=120)
    assert solved > 0 and polished["cost"].sum() < fast["cost"].sum()
    assert (polished["cost"] <= fast["cost"] * (1 + 1e-9) + 1e-9).all()
    assert (polished["usage"] <= fast["usage"] + 1e-7 * np.maximum(1.0, fast["usage"])).all()
    cost, use = lp.cost_and_usage(inst, polished)                   # its parts are the plan it reports
    assert np.allclose(cost, polished["cost"]) and np.allclose(use, polished["usage"])
    # a gap already met: nothing is re-solved
    assert lagrangian.polish(inst, best, lam, fast["lower"], bound, tol=1.0, budget_s=120)[1] == 0
