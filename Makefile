# The two commands of the README are `make demo` and `make test`; both set everything up first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup redis demo test unit integration e2e lint mypy bench all

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

redis:
	@bash .ci/ensure-redis

demo: setup redis
	$(BIN)/cio-fleet demo

# The whole suite with a coverage report of worker/ and producers/ (in-process code: the e2e tests' worker
# processes are not measured). The floor is the figure measured when the report was added (84 %), minus one point.
COVERAGE_FLOOR ?= 83

test: setup redis
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

# The three tiers: pure code (no Redis, no HTTP), real Redis and HTTP servers, real worker processes.
unit: setup
	$(BIN)/pytest tests/unit

integration: setup redis
	$(BIN)/pytest tests/integration

e2e: setup redis
	$(BIN)/pytest tests/e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy: setup
	$(BIN)/mypy worker producers tests

bench: setup redis
	$(BIN)/pytest tests/benchmarks -s -p no:cacheprovider -o addopts=""

all: lint mypy test
