# Two commands: `make run` (the main job on the embedded default) and `make test` (lint + the suite on real
# PostgreSQL and Redis). Both create .venv from requirements/ first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
SESSION_DATE ?= 2026-11-20
SEED ?= 7
SESSION := var/sessions/session-$(SESSION_DATE)-seed$(SEED).ndjson.gz
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tradingplatform
TEST_REDIS_URL ?= redis://127.0.0.1:6379/9

.PHONY: run run-live-sim test lint bench-pipeline bench-ingest bench-orders bench-distribution clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.prod-installed: $(BIN)/python requirements/base.txt requirements/prod.txt
	$(BIN)/pip install --quiet -r requirements/prod.txt
	touch $@

$(VENV)/.dev-installed: $(VENV)/.prod-installed requirements/dev.txt
	$(BIN)/pip install --quiet -r requirements/dev.txt
	touch $@

# The replay's progress bar and summary on a quiet console; `make run LOG_LEVEL=info` shows every signal, risk
# decision and post (the local sinks) as it happens.
RUN_LOG_LEVEL ?= warning

run: export LOG_LEVEL ?= $(RUN_LOG_LEVEL)
run: export LOG_FORMAT ?= console
run: $(VENV)/.prod-installed
	$(BIN)/python manage.py migrate --noinput -v 0
	$(BIN)/python manage.py setup_schedules
	$(BIN)/python manage.py make_session --date $(SESSION_DATE) --seed $(SEED) --out $(SESSION)
	$(BIN)/python manage.py replay $(SESSION) --json var/replay-summary.json

# The live path on this machine: the Unusual Whales stand-in plays a session on loopback, `manage.py uw_stream` reads
# it and Celery workers run every stage, on PostgreSQL (database tp_live) and Redis (db 12); orders go through the IB
# adapter (`ib_listener`) to a TWS simulator on loopback trading against the recorded market. LIVE_SIM_ARGS adds
# options, e.g. --seconds 0 (until Ctrl-C) --speed 30 --start 09:50, or --broker paper for the paper broker.
LIVE_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tp_live
LIVE_REDIS_URL ?= redis://127.0.0.1:6379/12

run-live-sim: export LOG_FORMAT ?= console
run-live-sim: $(VENV)/.prod-installed
	@psql "$(dir $(LIVE_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(LIVE_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(LIVE_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(LIVE_DATABASE_URL))"
	DATABASE_URL=$(LIVE_DATABASE_URL) REDIS_URL=$(LIVE_REDIS_URL) $(BIN)/python manage.py migrate --noinput -v 0
	DATABASE_URL=$(LIVE_DATABASE_URL) REDIS_URL=$(LIVE_REDIS_URL) TP_TASKS_EAGER=0 \
	  $(BIN)/python manage.py live_sim --date $(SESSION_DATE) --seed $(SEED) $(LIVE_SIM_ARGS)

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# What the tests need from Debian besides Python: docker-compose (compose.yaml validation), chromium (the admin's
# browser test, driven by playwright) and prometheus (its promtool checks the alert rules).
SYSTEM_TOOLS := docker-compose:docker-compose chromium:chromium promtool:prometheus

test: lint
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	  if [ -n "$$missing" ]; then echo "installing from Debian:$$missing"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing) \
	      >/dev/null 2>&1 || echo "could not install$$missing"; fi
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) TP_TASKS_EAGER=1 $(BIN)/pytest

BENCH_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/tp_bench
BENCH_REDIS_URL ?= redis://127.0.0.1:6379/10

# The pipeline benchmark wipes its own scratch database (tp_bench) and Redis db (10), never the test or run ones.
bench-pipeline: $(VENV)/.prod-installed
	@psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(BENCH_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DATABASE_URL))"
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) TP_TASKS_EAGER=0 \
	  $(BIN)/python manage.py bench pipeline --scratch --json var/bench-pipeline.json

# The ingestion benchmark (socket stand-in -> uw_stream -> one ingestion worker -> PostgreSQL and Redis, beside COPY
# alone) also wipes tp_bench and Redis db 10. BENCH_INGEST_ARGS adds options, e.g. --frames 100000 --pool prefork.
bench-ingest: $(VENV)/.prod-installed
	@psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(BENCH_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DATABASE_URL))"
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) TP_TASKS_EAGER=0 \
	  $(BIN)/python manage.py bench ingest --scratch --json var/bench-ingest.json $(BENCH_INGEST_ARGS)

# Decision -> booked fill per broker path (paper, IB direct, IB through ib_listener), against the TWS simulator.
bench-orders: $(VENV)/.prod-installed
	@psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(BENCH_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DATABASE_URL))"
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) TP_TASKS_EAGER=1 \
	  $(BIN)/python manage.py bench orders --scratch --json var/bench-orders.json $(BENCH_ORDERS_ARGS)

# Post lateness per Discord tier through a real worker and beat, against the Discord stand-in (about 2 minutes).
bench-distribution: $(VENV)/.prod-installed
	@psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(BENCH_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DATABASE_URL))"
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) TP_TASKS_EAGER=0 \
	  $(BIN)/python manage.py bench distribution --scratch --json var/bench-distribution.json $(BENCH_DISTRIBUTION_ARGS)

# The operations dashboard's reads over empty and filled tick tables (1,000,000 option trades by default; a few
# minutes). Also wipes tp_bench and Redis db 10. BENCH_DASHBOARD_ARGS adds options, e.g. --rows 300000 --repeat 20.
.PHONY: bench-dashboard
bench-dashboard: $(VENV)/.prod-installed
	@psql "$(dir $(BENCH_DATABASE_URL))postgres" -tAc "SELECT 1 FROM pg_database WHERE datname='$(notdir $(BENCH_DATABASE_URL))'" \
	  | grep -q 1 || psql "$(dir $(BENCH_DATABASE_URL))postgres" -c "CREATE DATABASE $(notdir $(BENCH_DATABASE_URL))"
	DATABASE_URL=$(BENCH_DATABASE_URL) REDIS_URL=$(BENCH_REDIS_URL) TP_TASKS_EAGER=1 \
	  $(BIN)/python manage.py bench dashboard --scratch --json var/bench-dashboard.json $(BENCH_DASHBOARD_ARGS)

clean:
	rm -rf var/tradingplatform.sqlite3* var/sessions
