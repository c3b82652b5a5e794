# The words a user says. `make help` lists them.
# Settings come from the environment or a .env file (see .env.example), for example:
#   make run HDB_RESALE_DATA_DIR=../shared/data/hdb_resale/monthly HDB_START_MONTH=2023-01

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The project's own Dagster instance (run history, schedules, the run queue's limit), shared by
# make dev and make run; dagster_orchestration/dagster.yaml is copied into it.
DAGSTER_HOME ?= $(CURDIR)/.dagster_home
DAGSTER_PORT ?= 3000
# The UI listens here; a class whose learners browse from their own machines: 0.0.0.0.
DAGSTER_HOST ?= 127.0.0.1
export DAGSTER_HOME
# Python start-up dominates short runs (dbt, Meltano, kernels): let it cache bytecode even where
# the environment turns that off.
unexport PYTHONDONTWRITEBYTECODE

.DEFAULT_GOAL := help
.PHONY: help setup run extract-load test test-fast dev lab data doctor checkpoint lint format bench clean settings notebooks class-server

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "} {printf "  make %-13s %s\n", $$1, $$2}'

setup: $(STAMP) ## Create .venv, install the pinned dependencies and Meltano's plugins (idempotent)

$(STAMP): pyproject.toml requirements.lock requirements-overrides.txt dagster_orchestration/__init__.py meltano/meltano.yml meltano/tap-hdb-resale/pyproject.toml meltano/target-hdb-duckdb/pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed: set PYTHON=python3.11 (or newer) and run make setup again.")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet uv==0.13.9
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet -r requirements.lock --overrides requirements-overrides.txt
	VIRTUAL_ENV=$(VENV) $(BIN)/uv pip install --quiet --no-deps -e . -e meltano/tap-hdb-resale -e meltano/target-hdb-duckdb
	cd meltano && PATH=$(CURDIR)/$(BIN):$$PATH MELTANO_SEND_ANONYMOUS_USAGE_STATS=false meltano install
	@touch $(STAMP)
	@echo "Setup complete. Next: make run"

run: setup ## Run the pipeline for the configured window through Dagster, headless
	$(BIN)/python -m classroom run

extract-load: setup ## Run only the extract-load stage
	$(BIN)/python -m classroom extract-load

settings: setup ## Show the settings a run would use
	@$(BIN)/python -m classroom settings

data: setup ## Download the window's months from data.gov.sg into data/raw/
	$(BIN)/python -m classroom download

doctor: ## Check everything a run needs (tools, pins, warehouse, lock, data, disk), with fixes
	@test -x $(BIN)/python || { echo "No .venv yet: run make setup first."; exit 1; }
	$(BIN)/python -m classroom doctor

checkpoint: setup ## Restore a reference state: STAGE=validate, or EXERCISE=01_add_a_validation_rule
	$(BIN)/python -m classroom checkpoint$(if $(STAGE), --stage $(STAGE))$(if $(EXERCISE), --exercise $(EXERCISE))

test: setup ## Run every test (the command CI runs), then check the notebooks' outputs
	@$(BIN)/python -m dagster_orchestration.home >/dev/null
	$(BIN)/pytest --durations=25
	$(BIN)/pytest --nbval notebooks/

test-fast: setup ## Run the tests not marked slow
	$(BIN)/pytest -m "not slow"

dev: setup ## Start the Dagster UI on http://127.0.0.1:3000 (DAGSTER_PORT to change it)
	@$(BIN)/python -m dagster_orchestration.home >/dev/null
	$(BIN)/dagster dev -h $(DAGSTER_HOST) -p $(DAGSTER_PORT)

notebooks: setup ## Re-execute the stage notebooks and the exercise solutions, saving their outputs
	$(BIN)/python -c "from classroom.reference_outputs import refresh_committed; refresh_committed()"
	$(BIN)/python -c "from classroom.exercises.solutions import refresh_solutions; refresh_solutions()"

class-server: setup ## A class's PostgreSQL server: warehouse catalog, Dagster storage, LEARNERS=alice,bob
	$(BIN)/python -m classroom class-server$(if $(LEARNERS), --learners $(LEARNERS))$(if $(LEARNERS_FILE), --learners-file $(LEARNERS_FILE))

lab: setup ## Open the notebooks in JupyterLab
	$(BIN)/jupyter lab --ip 127.0.0.1 --notebook-dir=notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: setup ## Check style (ruff)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: setup ## Format the code (ruff)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: setup ## Time and memory of each stage, one month to 1M rows, beside a DuckDB floor (ARGS=--quick)
	$(BIN)/python -m bench $(ARGS)

.PHONY: bench-quick
bench-quick: setup ## The benchmark's quick mode: one month, 12 months, 0.1M rows, once (CI)
	$(BIN)/python -m bench --quick $(ARGS)

clean: ## Remove the warehouse, run records, exercise workspaces, checkpoints and build output (keeps .venv and data/raw)
	rm -rf data/warehouse data/runs data/exercises data/checkpoints dbt_resale_flat/target dbt_resale_flat/logs .dagster_home
	find . -name __pycache__ -type d -prune -not -path './.venv/*' -exec rm -rf {} +
