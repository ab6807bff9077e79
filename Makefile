# The two commands of the README are `make demo` and `make test`; both set everything up first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

.PHONY: setup redis demo test lint mypy bench all

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $@

redis:
	@bash .ci/ensure-redis

demo: setup redis
	$(BIN)/cio-fleet demo

test: setup redis
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy: setup
	$(BIN)/mypy worker producers tests

bench: setup redis
	$(BIN)/pytest tests/benchmarks -s -p no:cacheprovider -o addopts=""

all: lint mypy test
