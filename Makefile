# Echelon: `make run` (everything on embedded defaults) and `make test` (the whole suite).
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
ECHELON := $(BIN)/echelon
# DS: the data date the demo run processes; ITEMS x LOCATIONS: the size of the demo world
DS ?= 2026-11-20
ITEMS ?= 120
LOCATIONS ?= 3
SEED ?= 42
DAG ?= demand_nightly
MLFLOW_PORT ?= 5000

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(BIN)/.installed: pyproject.toml setup.py constraints.txt
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, from the pinned CPU wheel: an unpinned torch would pull several GB of CUDA packages
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,stack]'
	touch $@

env: $(BIN)/.installed  ## create .venv with the pinned stack (constraints.txt) and the project installed

init: env  ## initialise Airflow's metadata database and MLflow's store under var/
	mkdir -p var && $(ECHELON) airflow db migrate > var/airflow-db-migrate.log 2>&1 || (tail -20 var/airflow-db-migrate.log; exit 1)

world: env  ## generate the synthetic retail world ending at DS
	$(ECHELON) world --items $(ITEMS) --locations $(LOCATIONS) --end $(DS) --seed $(SEED)

run: init world  ## the main job: run demand_nightly for DS through Airflow and print where the results are
	$(ECHELON) airflow dags reserialize > /dev/null
	$(ECHELON) airflow dags test $(DAG) $$($(BIN)/python -c "from echelon.schedule import nightly_run_date; print(nightly_run_date('$(DS)').isoformat())")
	$(ECHELON) demand summary --ds $(DS)

test: env  ## the whole test suite (what CI runs), on two workers: whole modules each, the slowest first; lists the 30 slowest tests
	$(BIN)/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=30

airflow: init  ## start Airflow locally (api-server on :8080, scheduler, dag-processor, triggerer)
	$(ECHELON) airflow standalone

mlflow: env  ## start the MLflow UI on the project's tracking store (:5000)
	$(BIN)/mlflow ui --backend-store-uri "$$($(BIN)/python -c 'from echelon.settings import get_settings; print(get_settings().mlflow_uri)')" --port $(MLFLOW_PORT)

backfill: init  ## backfill data dates FROM..TO of DAG with Airflow's backfill (needs `make airflow` running)
	$(ECHELON) backfill --dag $(DAG) --from $(FROM) --to $(TO)

stack: env  ## the production-shaped stack from real processes: Airflow + MLflow on Postgres, a Spark cluster (Ctrl-C stops)
	$(BIN)/python -m echelon.stack

test-stack: env  ## only the stack tests (tests/stack): Postgres, Spark cluster, scheduler runs, browser checks
	$(BIN)/python -m pytest -q tests/stack

chaos: env  ## the fault matrix on the stack: Postgres, MLflow, a Spark worker down mid-run, a full lake disk, a corrupt partition (results/reliability.md)
	nice -n 10 $(BIN)/python benchmarks/chaos.py

bench-stack: env  ## the stack: 7-date backfill with 1 vs 2 parallel runs, feature job local[2] vs the Spark cluster
	$(BIN)/python benchmarks/stack_bench.py --out benchmarks/results

bench-demand: env  ## accuracy (store-item, every frequency, MQ models), LightGBM speed old vs new, scale 360/3,600/36,000 series
	$(BIN)/python benchmarks/demand_accuracy.py --out benchmarks/results
	$(BIN)/python benchmarks/demand_frequencies.py --out benchmarks/results
	$(BIN)/python benchmarks/demand_speed.py --out benchmarks/results
	$(BIN)/python benchmarks/demand_lgbm_speed.py world --out benchmarks/results
	$(BIN)/python benchmarks/demand_auto_speed.py speed --out benchmarks/results
	$(BIN)/python benchmarks/demand_auto_speed.py accuracy --out benchmarks/results
	$(BIN)/python benchmarks/demand_frequencies_backtest_speed.py --out benchmarks/results
	$(BIN)/python benchmarks/demand_mq.py --out benchmarks/results
	$(BIN)/python benchmarks/demand_scale.py --sizes 360 3600 36000 --out benchmarks/results

PLACEMENT_SHAPES ?= 1000x5x4:lm,1000x8x4:lm,1000x50x4:l,1000x5x60:l,1000x50x60:l,5000x20x20:l,20000x10x10:l,3000x20x40:lm

bench-placement: env  ## decomposition vs monolithic: growing items, then a shape grid (items x FCs x regions); writes benchmarks/results/
	$(BIN)/python benchmarks/placement_scaling.py --out benchmarks/results
	$(BIN)/python benchmarks/placement_scaling.py --name placement_shapes --cases $(PLACEMENT_SHAPES) --tol 5e-3 --limit 600 --out benchmarks/results

bench-placement-sim: env  ## the simulation's evidence: plan vs baselines and lead-time aware vs blind, with intervals and plots
	$(BIN)/python benchmarks/placement_sim.py --out benchmarks/results

bench-capacity: env  ## capacity clearing speed (10k/100k/1M requests) and the market simulation; writes benchmarks/results/
	$(BIN)/python benchmarks/capacity_bench.py --out benchmarks/results

bench-callouts: env  ## callouts: OPE on ../shared/data/obd and regret/layout search on the synthetic world
	$(BIN)/python benchmarks/callouts_ope_obd.py --out benchmarks/results
	$(BIN)/python benchmarks/callouts_regret.py --out benchmarks/results

bench-damage: env  ## damage accuracy (synthetic + ../shared/data/magnetic_tile, 224 px patch bank), views, throughput; writes benchmarks/results/
	$(BIN)/python benchmarks/damage_benchmark.py --quick --out benchmarks/results
	$(BIN)/python benchmarks/damage_patchcore_benchmark.py --out benchmarks/results
	$(BIN)/python benchmarks/damage_views_benchmark.py --out benchmarks/results

clean-var:  ## delete all local state (lake, reports, Airflow and MLflow stores)
	rm -rf var

.PHONY: help env init world run test airflow mlflow backfill stack test-stack bench-stack bench-demand bench-placement bench-placement-sim bench-capacity bench-callouts bench-damage clean-var
