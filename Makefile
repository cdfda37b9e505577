# Quick start: `make demo` (set-up + one training run) and `make test` (set-up + the whole suite).
# All state lives under .state/ (git-ignored); nothing is written outside this folder.

PYTHON      ?= python3.11
VENV        := .venv
BIN         := $(VENV)/bin
STATE       := $(CURDIR)/.state
MODEL       ?= fraud_detection
PORT        ?= 3000
PYTEST_ARGS ?=
# pytest workers for `make test` (0: one process, in collection order). See tests/conftest.py.
TEST_WORKERS ?= 2
DATA        ?=
REASON      ?=
# make traffic: where, how fast, how long (whichever of COUNT and DURATION comes first), what rows
URL         ?= http://127.0.0.1:3000
RATE        ?= 10
COUNT       ?= 1000
DURATION    ?= 60
BATCH       ?= 1
SOURCE      ?= holdout
DRIFT       ?=
LABEL_DELAY ?= 30
PENDING     ?= wait

export PYTHONPATH        := $(CURDIR):$(CURDIR)/plugins
export MODELOPS_STATE_DIR := $(STATE)
export BENTOML_HOME      := $(STATE)/bentoml
export AIRFLOW_HOME      := $(STATE)/airflow
export XDG_CACHE_HOME    := $(STATE)/cache
export MPLCONFIGDIR      := $(STATE)/cache/matplotlib
export GX_ANALYTICS_ENABLED := False
export BENTOML_DO_NOT_TRACK := True
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK      := true
export PIP_CACHE_DIR     := $(STATE)/cache/pip
export TMPDIR            := $(STATE)/tmp

.PHONY: help setup demo demo-drift bench-drift run test test-unit test-integration up data check-specs spec-docs serve traffic audit backtest bench bench-training bench-serving bench-rollout lint format clean

help:
	@echo "make demo         set up, then train MODEL end to end (default: the bundled fraud_detection example,"
	@echo "                  whose data is generated; any other model reads its own data, never writes it)"
	@echo "make demo-drift   serve MODEL's champion, normal then drifted traffic (DRIFT=...), the monitoring DAG"
	@echo "                  over both windows (no trigger, then one), and the retraining run it requested"
	@echo "make demo-bad-canary  [FAULT=error|shift|slow] roll out a broken candidate of MODEL's champion under"
	@echo "                  traffic and watch it rolled back automatically (stable keeps 100%, registry unchanged)"
	@echo "make run          MODEL=<name> [DATA=<file or folder>] [REASON=...]: run that model's training DAG"
	@echo "                  locally (real Airflow), optionally on other data, with the same step summary"
	@echo "                  exit codes of demo/run/demo-drift (make shows 'Error N'): 0 promoted, 1 failed run,"
	@echo "                  2 usage error (model, spec, DATA), 3 not promoted (gate or approver rejected, rolled back)"
	@echo "make test         set up, then run the whole test suite"
	@echo "make up           Airflow (standalone) + MLflow UI for interactive use"
	@echo "make data         regenerate the bundled example's dataset (in .state/data/, never elsewhere)"
	@echo "make check-specs  validate every spec in include/models/"
	@echo "make draft-spec DATA=<file|folder> TARGET=<column> NAME=<model> [OUT=<folder>] [FORCE=1]"
	@echo "                  draft include/models/NAME.yaml from CSV/Parquet data, with comments to review"
	@echo "make spec-docs    regenerate docs/model-spec.md and docs/settings.md from the schema and the settings"
	@echo "make serve        serve MODEL's champion bento with the inference log on http://127.0.0.1:$(PORT) (PORT=...)"
	@echo "make traffic      send MODEL's rows to URL (RATE/s, COUNT or DURATION s, BATCH rows each, SOURCE,"
	@echo "                  DRIFT, labels LABEL_DELAY s later, PENDING=wait|write|drop); see README"
	@echo "make backtest     MODEL=<name> SPEC=<changed spec> [HTML=out.html]: which past gate decisions the change"
	@echo "                  would flip (replayed from each run's recorded evidence; nothing is written)"
	@echo "make audit        lifecycle of MODEL (and VERSION): evidence, approvals, alias changes (NO_AIRFLOW=1: MLflow only)"
	@echo "make bench        parse-time and orchestration-overhead benchmarks"
	@echo "make bench-serving   bento vs FastAPI latency/throughput, inference log on vs off"
	@echo "make bench-training  training throughput (GPU when present), bf16 vs fp32"
	@echo "make bench-rollout   rollout: splitter latency, a failing canary to 100% stable, a 4-step rollout (~6 min)"
	@echo "make lint         ruff (pyflakes, syntax, import order) and ruff format --check (one style everywhere)"
	@echo "make format       rewrite the code in that style (ruff format, import order)"
	@echo "make clean        delete .state/ (all local runs, models and bentos)"

setup: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	@touch $@

demo: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python -m include.modelops.cli demo --model $(MODEL)

# Serve the champion, normal then drifted traffic, the monitoring DAG over both windows, one retrain.
demo-drift: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python -m include.modelops.cli demo-drift --model $(MODEL) $(if $(DRIFT),--drift "$(DRIFT)",)

run: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python -m include.modelops.cli run --model $(MODEL) $(if $(DATA),--data "$(DATA)",) $(if $(REASON),--reason "$(REASON)",)

test: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python -m pytest --basetemp=$(STATE)/pytest $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup,) $(PYTEST_ARGS)

test-unit: setup
	$(BIN)/python -m pytest tests/unit tests/dags $(PYTEST_ARGS)

test-integration: setup
	$(BIN)/python -m pytest tests/integration tests/e2e $(PYTEST_ARGS)

up: setup
	$(BIN)/python -m include.modelops.cli up

data: setup
	$(BIN)/python -m include.modelops.cli data

.PHONY: demo-bad-canary
FAULT       ?= error
demo-bad-canary: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python -m include.modelops.cli demo-bad-canary --model $(MODEL) --fault $(FAULT)

.PHONY: draft-spec
draft-spec: setup
	@$(BIN)/python -m include.modelops.cli draft-spec $(if $(DATA),--data "$(DATA)") \
		$(if $(TARGET),--target "$(TARGET)") $(if $(NAME),--name "$(NAME)") $(if $(OUT),--out "$(OUT)") \
		$(if $(FORMAT),--format "$(FORMAT)") $(if $(filter 1 yes true,$(FORCE)),--force)

spec-docs: setup
	$(BIN)/python -m include.modelops.spec_docs

check-specs: setup
	$(BIN)/python -m include.modelops.cli check-specs

serve: setup
	$(BIN)/python -m include.modelops.cli serve --model $(MODEL) --port $(PORT)

traffic: setup
	$(BIN)/python -m include.modelops.cli traffic --model $(MODEL) --url $(URL) --rate $(RATE) --count $(COUNT) \
		--duration $(DURATION) --rows-per-request $(BATCH) --source $(SOURCE) --drift "$(DRIFT)" \
		--label-delay $(LABEL_DELAY) --pending $(PENDING)

bench: setup
	$(BIN)/python tests/benchmarks/bench_orchestration.py

bench-training: setup
	$(BIN)/python tests/benchmarks/bench_training.py

bench-serving: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python tests/benchmarks/bench_serving.py

bench-drift: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python tests/benchmarks/bench_drift.py
bench-rollout: setup
	@mkdir -p $(TMPDIR)
	$(BIN)/python tests/benchmarks/bench_rollout.py

backtest: setup
	$(BIN)/python -m include.modelops.cli backtest --model $(MODEL) --spec "$(SPEC)" $(if $(HTML),--html "$(HTML)",)

audit: setup
	$(BIN)/python -m include.modelops.cli audit --model $(MODEL) $(if $(VERSION),--version $(VERSION),) $(if $(NO_AIRFLOW),--no-airflow,)

lint: setup
	$(BIN)/python -m ruff check . --select F,E9,I --exclude .venv,.state
	$(BIN)/python -m ruff format --check .

format: setup
	$(BIN)/python -m ruff format .
	$(BIN)/python -m ruff check . --select I --fix --exclude .venv,.state

clean:
	rm -rf $(STATE)
