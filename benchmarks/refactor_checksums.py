"""Issue 17's before/after check: every domain's DAG, run on a fresh lake with the code of a given source tree,
then the checksums of every partition published. Each domain runs its DAG's steps in the DAG's order, as
its tasks call them (the steps modules; `dag.test()` calls the same functions), each on a lake of its own:

  retail-world      a small retail world (`echelon world`: items, sales, plan, events, reference network)
  demand-night      demand_nightly on a tiny world (10 items x 2 locations, seed 7): ingest, features,
                    candidates (seasonal_naive, lightgbm), train_candidate each, choose_challenger,
                    evaluate_and_promote, score, report
  placement-night   placement_nightly on its demo world: check_inputs, solve (monolithic)
  capacity-round    capacity_weekly on stubbed upstream: world, base_limits, requests, clear, statements
  callouts-days     five days of world-mode ingest and the matured feedback of the last
  callouts-night    callouts_nightly after ten days of seeded history: ingest, feedback, train,
                    evaluate_and_promote, serve (the DAG test's world)
  damage            damage_training (world, train, evaluate_and_promote: tiny world, 1 epoch) and
                    damage_batches on the world's batch (gate_manifest, score with Spark, log_batch)
  membership-week   membership_weekly on a 400-customer, 12-month panel: simulate, ingest, features, fit
                    (Deep PQR at a tenth of its steps), counterfactual

    git archive <commit> | tar -x -C /tmp/before
    python benchmarks/refactor_checksums.py /tmp/before /tmp/var-before before.json [SECTION,...]
    python benchmarks/refactor_checksums.py "$PWD" /tmp/var-after after.json
    echelon checksums compare before.json after.json

Runs with this environment's packages and the tree's code: the editable install's finder is pointed at
TREE before anything of echelon is imported. Prints each section's wall time. Results:
benchmarks/results/refactor_checksums.md."""
import json
import os
import sys
import time
from pathlib import Path

tree, var, out = sys.argv[1], sys.argv[2], sys.argv[3]
import __editable___echelon_0_1_0_finder as finder  # noqa: E402

finder.MAPPING.update({"echelon": f"{tree}/echelon", "echelon.expectations": f"{tree}/expectations",
                       "echelon.jobs": f"{tree}/jobs", "echelon.models": f"{tree}/models"})
os.environ.update({"ECHELON_VAR": var, "ECHELON_HOME": tree, "ECHELON_SPARK_SHUFFLE_PARTITIONS": "4",
                   "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true", "SPARK_MASTER": "local[2]",
                   "ECHELON_CODE_VERSION": "same"})
import echelon  # noqa: E402

assert echelon.__file__.startswith(tree), echelon.__file__
DS = "2026-11-22"
SECTIONS = {}


def section(env: dict | None = None):
    """A section: a function run on the lake <var>/lake/<its name, with - for _>, with `env` set first."""
    def register(run):
        SECTIONS[run.__name__.replace("_", "-")] = (run, env or {})
        return run
    return register


@section()
def retail_world():
    from echelon.jobs.demand import world as dworld

    dworld.run(dworld.WorldConfig(items=16, locations=3, start="2025-06-01", end=DS, seed=7))


@section()
def placement_night():
    from echelon.models.placement import steps as psteps

    try:   # placement's world moved from models/placement/demo.py to jobs/placement/world.py (reference world)
        from echelon.jobs.placement import world as demo
    except ImportError:
        from echelon.models.placement import demo
    demo.publish(DS, items=12, facilities=4, regions=3, seed=1)
    psteps.check_inputs(DS)
    psteps.solve(DS, method="monolithic", engine="local")


@section()
def capacity_round():
    from echelon.jobs.capacity import world as cworld
    from echelon.models.capacity import steps as csteps

    cworld.stub_upstream(DS)
    cworld.run(DS)
    for step in (csteps.base_limits, csteps.requests, csteps.clear, csteps.statements):
        step(DS)


@section({"ECHELON_CALLOUTS_TRAFFIC": "800"})
def callouts_days():
    from echelon.models.callouts import steps as osteps

    for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"):
        osteps.ingest(day)
    osteps.feedback("2026-10-05")


# tests/dag/test_demand_e2e.py's world and candidates; retraining due every night
@section({"ECHELON_DEMAND_CANDIDATES": "seasonal_naive,lightgbm", "ECHELON_DEMAND_RETRAIN": "daily",
          "ECHELON_DEMAND_MODEL_PARAMS": json.dumps({"lightgbm": {"num_boost_round": 40, "max_origins_per_series": 60}})})
def demand_night():
    from echelon.jobs.demand import world as dworld
    from echelon.models.demand import steps as dsteps

    dworld.run(dworld.WorldConfig(items=10, locations=2, start="2025-03-01", end=DS, seed=7))
    dsteps.ingest(DS)
    dsteps.features(DS)
    results = [dsteps.train_candidate(DS, name) for name in dsteps.candidates(DS)]
    dsteps.choose_challenger(DS, results)
    dsteps.evaluate_and_promote(DS)
    dsteps.score(DS)
    dsteps.report(DS)


# tests/dag/test_callouts_e2e.py's world: ten days of seeded history, then the night of 2026-11-20
@section({"ECHELON_CALLOUTS_WORLD_START": "2026-11-10", "ECHELON_CALLOUTS_TRAFFIC": "1500",
          "ECHELON_CALLOUTS_EVAL_DAYS": "2", "ECHELON_CALLOUTS_SEED": "7"})
def callouts_night():
    from threadpoolctl import threadpool_limits

    from echelon.jobs.callouts.ingest import seed_history
    from echelon.models.callouts import steps as osteps

    seed_history("2026-11-10", "2026-11-19")
    with threadpool_limits(limits=1):
        for step in ("ingest", "feedback", "train", "evaluate_and_promote", "serve"):
            osteps.STEPS[step]("2026-11-20")


# damage_training, then damage_batches on the world's batch (the tiny world's sizes, one epoch, one thread)
@section({"ECHELON_DAMAGE_EPOCHS": "1", "ECHELON_DAMAGE_WORLD": f"{var}/damage-world",
          "ECHELON_DAMAGE_WORLD_SIZES": json.dumps(dict(products=8, new_products=2, gallery=6, train=240, calib=150,
                                                        valid=300, batch=120))})
def damage():
    import torch

    from echelon.models.damage import steps as msteps

    torch.set_num_threads(1)
    for step in ("world", "train", "evaluate_and_promote"):
        msteps.STEPS[step](DS)
    batch = msteps.batch_info(DS, "refactor-1", f"{var}/damage-world/batch.csv")
    for step in ("gate_manifest", "score", "log_batch"):
        msteps.STEPS[step](batch)


# tests/dag/test_membership_e2e.py's panel and fit scale
@section({"ECHELON_MEMBERSHIP_FIT_SCALE": "0.1"})
def membership_week():
    from echelon.models.membership import steps as bsteps

    week = "2026-12-06"
    bsteps.simulate(week, seed=21, customers=400, months=12)
    for step in ("ingest", "features", "fit", "counterfactual"):
        bsteps.STEPS[step](week)


chosen = sys.argv[4].split(",") if len(sys.argv) > 4 else list(SECTIONS)
assert set(chosen) <= set(SECTIONS), f"unknown sections {set(chosen) - set(SECTIONS)}; known: {list(SECTIONS)}"
for name in chosen:
    run, env = SECTIONS[name]
    began = time.time()
    os.environ["ECHELON_LAKE"] = f"{var}/lake/{name}"
    os.environ.update(env)
    run()
    for key in env:
        del os.environ[key]
    print(f"section {name}: {time.time() - began:.0f} s", flush=True)

lake = Path(var) / "lake"
found = {}
for manifest in sorted(lake.glob("*/*/*/*/ds=*/_manifest.json")):
    data = json.loads(manifest.read_text())
    found[str(manifest.parent.relative_to(lake))] = {"rows": data["rows"], "checksum": data["checksum"]}
Path(out).write_text(json.dumps(found, indent=1, sort_keys=True))
print(len(found), "partitions")
