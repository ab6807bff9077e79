# The two commands of the README are `make demo` and `make test`; both set everything up first.
VENV ?= .venv
BIN := $(VENV)/bin
PYTHON ?= python3

NODE_CLIENTS := tests/e2e/node

.PHONY: setup node-clients browser redis rabbitmq demo test unit integration e2e lint mypy bench picture constraints all

setup: $(VENV)/.installed

# The real Node.js and browser SDKs the intake's end-to-end tests send with, exactly as locked (Node.js >= 18, npm).
node-clients: $(NODE_CLIENTS)/node_modules/.package-lock.json

$(NODE_CLIENTS)/node_modules/.package-lock.json: $(NODE_CLIENTS)/package.json $(NODE_CLIENTS)/package-lock.json
	cd $(NODE_CLIENTS) && npm ci --no-audit --no-fund --loglevel=error

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[worker,dev]'
	touch $@

redis:
	@bash .ci/ensure-redis

# RabbitMQ on 127.0.0.1:5672: the end-to-end tests also run the fleet with CIO_BROKER_URL=amqp://.
rabbitmq:
	@bash .ci/ensure-rabbitmq

demo: setup redis
	$(BIN)/cio-fleet demo

# Node.js, npm and Debian's chromium for the intake's SDK and browser tests (installed with apt-get when missing).
browser:
	@bash .ci/ensure-browser-and-node

# The whole suite with a coverage report of worker/ and producers/ (in-process code: the e2e tests' worker
# processes are not measured). The floor is the figure measured when the report was added (84 %), minus one point.
COVERAGE_FLOOR ?= 83

test: setup redis rabbitmq browser node-clients
	$(BIN)/pytest --cov --cov-report=term --cov-fail-under=$(COVERAGE_FLOOR)

# The three tiers: pure code (no Redis, no HTTP), real Redis and HTTP servers, real worker processes.
unit: setup
	$(BIN)/pytest tests/unit

integration: setup redis
	$(BIN)/pytest tests/integration

e2e: setup redis rabbitmq browser node-clients
	$(BIN)/pytest tests/e2e

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

mypy: setup
	$(BIN)/mypy worker producers tests

bench: setup redis
	$(BIN)/pytest tests/benchmarks -s -p no:cacheprovider -o addopts=""

# deploy/constraints.txt: the image's pinned runtime dependencies, from a fresh venv (after changing pyproject.toml).
constraints:
	rm -rf .run/constraints && $(PYTHON) -m venv .run/constraints
	.run/constraints/bin/pip install --quiet --upgrade pip
	.run/constraints/bin/pip install --quiet '.[worker,local]'
	{ sed -n '1,3p' deploy/constraints.txt; .run/constraints/bin/pip freeze --exclude cio-fleet; } > .run/constraints.txt
	mv .run/constraints.txt deploy/constraints.txt

# The README's picture of `cio-fleet status --watch` (tests/unit/test_status_picture.py fails when it is stale).
picture: setup
	$(BIN)/python -m tests.support.status_picture docs/status-watch.svg

all: lint mypy test
