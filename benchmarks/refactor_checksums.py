"""Issue 17's before/after check: a small retail world (`echelon world`: items, sales, plan, events and the
reference network sized from the sales), one placement night (demo world, check, monolithic solve), one
capacity round (stubbed upstream, world, base_limits, requests, clear, statements) and five callouts
days (world-mode ingest, then the matured feedback of the last) on a fresh lake
with the code of a given source tree, then the checksums of every partition published.

    git archive <commit> | tar -x -C /tmp/before
    python benchmarks/refactor_checksums.py /tmp/before /tmp/var-before before.json
    python benchmarks/refactor_checksums.py "$PWD" /tmp/var-after after.json
    echelon checksums compare before.json after.json

Runs with this environment's packages and the tree's code: the editable install's finder is pointed at
TREE before anything of echelon is imported. Results: benchmarks/results/refactor_checksums.md."""
import os
import sys

tree, var, out = sys.argv[1], sys.argv[2], sys.argv[3]
import __editable___echelon_0_1_0_finder as finder  # noqa: E402

finder.MAPPING.update({"echelon": f"{tree}/echelon", "echelon.expectations": f"{tree}/expectations",
                       "echelon.jobs": f"{tree}/jobs", "echelon.models": f"{tree}/models"})
os.environ.update({"ECHELON_VAR": var, "ECHELON_HOME": tree, "ECHELON_SPARK_SHUFFLE_PARTITIONS": "4",
                   "MLFLOW_SKIP_PIP_REQUIREMENTS_CHECK": "true", "SPARK_MASTER": "local[2]",
                   "ECHELON_CODE_VERSION": "same"})
import echelon  # noqa: E402

assert echelon.__file__.startswith(tree), echelon.__file__
from echelon.jobs.capacity import world as cworld  # noqa: E402
from echelon.models.capacity import steps as csteps  # noqa: E402
from echelon.jobs.demand import world as dworld  # noqa: E402
from echelon.models.placement import steps as psteps  # noqa: E402

try:   # placement's world moved from models/placement/demo.py to jobs/placement/world.py (reference world)
    from echelon.jobs.placement import world as demo  # noqa: E402
except ImportError:
    from echelon.models.placement import demo  # noqa: E402

DS = "2026-11-22"
os.environ["ECHELON_LAKE"] = f"{var}/lake/retail-world"
dworld.run(dworld.WorldConfig(items=16, locations=3, start="2025-06-01", end=DS, seed=7))
os.environ["ECHELON_LAKE"] = f"{var}/lake/placement-night"
demo.publish(DS, items=12, facilities=4, regions=3, seed=1)
psteps.check_inputs(DS)
psteps.solve(DS, method="monolithic", engine="local")
os.environ["ECHELON_LAKE"] = f"{var}/lake/capacity-round"
cworld.stub_upstream(DS)
cworld.run(DS)
for step in (csteps.base_limits, csteps.requests, csteps.clear, csteps.statements):
    step(DS)
os.environ["ECHELON_LAKE"] = f"{var}/lake/callouts-days"
os.environ["ECHELON_CALLOUTS_TRAFFIC"] = "800"
from echelon.models.callouts import steps as osteps  # noqa: E402

for day in ("2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05"):
    osteps.ingest(day)
osteps.feedback("2026-10-05")

import json  # noqa: E402
from pathlib import Path  # noqa: E402

lake = Path(var) / "lake"
found = {}
for manifest in sorted(lake.glob("*/*/*/*/ds=*/_manifest.json")):
    data = json.loads(manifest.read_text())
    found[str(manifest.parent.relative_to(lake))] = {"rows": data["rows"], "checksum": data["checksum"]}
Path(out).write_text(json.dumps(found, indent=1, sort_keys=True))
print(len(found), "partitions")
