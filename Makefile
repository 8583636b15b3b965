# firn: developer and CI entry points. CI runs .ci/run, which runs `make test`.
#
# Everything installed or built lives under $(FIRN_CACHE), outside the clone, and is reused:
#   $(FIRN_CACHE)/target   cargo target dir      $(FIRN_CACHE)/venv   Python test venv
#   $(FIRN_CACHE)/pg       test PostgreSQL (or /tmp/firn-pg-$$UID when $$HOME is private)
#   $(FIRN_CACHE)/tansu-0.6.0   the real Kafka-protocol broker for end-to-end tests
#   $(FIRN_CACHE)/airflow-venv  Airflow 3.3.2 (+ pyiceberg, pytest) for the DAG tests

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := build

FIRN_CACHE ?= $(HOME)/.cache/firn
CARGO_TARGET_DIR ?= $(FIRN_CACHE)/target
export FIRN_CACHE CARGO_TARGET_DIR

PYTHON_ENV := tests/scripts/python-env.sh
POSTGRES := tests/scripts/postgres.sh
MOTO := tests/scripts/moto.sh
TANSU := tests/scripts/tansu.sh
AIRFLOW_ENV := tests/scripts/airflow-env.sh
VENV_PYTHON := $(FIRN_CACHE)/venv/bin/python
AIRFLOW_PYTHON := $(FIRN_CACHE)/airflow-venv/bin/python

NEXTEST_ARGS ?=
PYTEST_ARGS ?= -q -p no:cacheprovider

# What Rust tests (and pytest) get. The URL is read from the script so there is one source of truth.
TEST_ENV = FIRN_TEST_PYTHON=$(VENV_PYTHON) \
	FIRN_TEST_READER=$(CURDIR)/tests/python/firn_read.py \
	FIRN_TEST_POSTGRES_URL=$$($(POSTGRES) url) \
	FIRN_TEST_S3_ENDPOINT=$$($(MOTO) url) \
	FIRN_TEST_TANSU=$$($(TANSU) path)

# cargo-nextest is on the CI image; plain cargo test runs the same tests where it is not.
NEXTEST = $(if $(shell command -v cargo-nextest),cargo nextest run --workspace --no-fail-fast --config-file tests/nextest.toml $(NEXTEST_ARGS),cargo test --workspace --no-fail-fast)
PYTEST = $(VENV_PYTHON) -m pytest $(PYTEST_ARGS) tests/python
# The DAG tests run the debug firn binary that the Rust suite builds.
DAG_PYTEST = FIRN_BIN=$(CARGO_TARGET_DIR)/debug/firn $(AIRFLOW_PYTHON) -m pytest $(PYTEST_ARGS) airflow_dags/tests

.PHONY: build demo test test-deps test-rust test-python test-airflow lint fmt clean-cache pg-stop \
	bench bench-ingest bench-freshness bench-silver bench-relay

build:
	@echo "==> cargo build --workspace --all-targets (target: $(CARGO_TARGET_DIR))"
	cargo build --workspace --all-targets

# Builds the same target set as `make test`, so the two share every compiled dependency
# (a narrower `-p firn-ingest` build resolves other features and recompiles most of them).
demo:
	@echo "==> cargo build --workspace --all-targets"
	cargo build --workspace --all-targets
	@echo "==> firn demo"
	$(CARGO_TARGET_DIR)/debug/firn demo

test-deps:
	@echo "==> python test env ($(FIRN_CACHE)/venv)"
	@$(PYTHON_ENV) >/dev/null
	@echo "==> Airflow test env ($(FIRN_CACHE)/airflow-venv)"
	@$(AIRFLOW_ENV) >/dev/null
	@echo "==> test postgres ($$($(POSTGRES) url))"
	@$(POSTGRES) start
	@echo "==> test S3 API, moto ($$($(MOTO) url))"
	@$(MOTO) start
	@echo "==> Kafka-protocol broker, tansu 0.6.0 (built once, about 11 minutes)"
	@$(TANSU) install

# Runs both suites even when the first fails, and fails if either did.
test: test-deps
	@status=0; \
	echo "==> cargo nextest run --workspace (a cold build takes a long while)"; \
	$(TEST_ENV) $(NEXTEST) || status=1; \
	echo "==> pytest tests/python"; \
	$(TEST_ENV) $(PYTEST) || status=1; \
	echo "==> pytest airflow_dags/tests"; \
	$(DAG_PYTEST) || status=1; \
	if [ $$status -ne 0 ]; then echo "==> make test: FAILED (see above)"; fi; \
	exit $$status

test-rust: test-deps
	@echo "==> cargo nextest run --workspace"
	$(TEST_ENV) $(NEXTEST)

test-python: test-deps
	@echo "==> pytest tests/python"
	$(TEST_ENV) $(PYTEST)

# Needs the debug firn binary (`make build`).
test-airflow:
	@$(AIRFLOW_ENV) >/dev/null
	@echo "==> pytest airflow_dags/tests"
	$(DAG_PYTEST)

lint:
	@echo "==> cargo fmt --check"
	cargo fmt --all -- --check
	@echo "==> cargo clippy -D warnings"
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

pg-stop:
	@$(POSTGRES) stop

# Benchmarks (docs/benchmarks.md): release builds in $(FIRN_CACHE)/target-release, Python peers
# in $(FIRN_CACHE)/bench-venv (bench/python-env.sh). Knobs are environment variables documented
# at the top of each script (e.g. `make bench-ingest SCALE=3300` for a 10M-message backlog).
bench: bench-ingest bench-freshness bench-silver bench-relay

bench-ingest:
	@$(TANSU) install
	bench/ingest.sh

bench-freshness:
	@$(TANSU) install
	bench/freshness.sh

bench-silver:
	bench/silver.sh

bench-relay:
	@$(TANSU) install
	bench/relay.sh

clean-cache:
	@echo "==> stopping test postgres and removing $(FIRN_CACHE)"
	@$(POSTGRES) destroy
	@$(MOTO) stop || true
	@case "$(FIRN_CACHE)" in ""|/) echo "refusing to remove FIRN_CACHE='$(FIRN_CACHE)'"; exit 1;; esac
	rm -rf "$(FIRN_CACHE)"
