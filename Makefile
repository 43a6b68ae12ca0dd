# The README's commands. Each creates .venv and installs what it needs on first use.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_STAMP := $(VENV)/.installed-demo
BENCH_STAMP := $(VENV)/.installed-bench

.PHONY: demo test lint typecheck security deploy-check unit integration e2e soak bench services clean image containers-e2e asyncapi-tools node-deps chaos browser

# $(call install,EXTRA): the venv (created on first use) with the project and EXTRA installed.
define install
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) on PATH"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(1)]'
	touch $@
endef

# dev includes demo (the unit tests run workers on fakeredis).
$(STAMP): pyproject.toml
	$(call install,dev)

$(DEMO_STAMP): pyproject.toml
	$(call install,demo)

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(BENCH_STAMP)

demo: $(DEMO_STAMP)
	$(BIN)/eventguard demo

test: $(STAMP) lint typecheck security deploy-check services asyncapi-tools node-deps browser
	$(BIN)/python -m pytest -q -m "not e2e or smoke" --durations=15

lint: $(STAMP)
	$(BIN)/ruff check .

typecheck: $(STAMP)
	$(BIN)/mypy

security: $(STAMP)
	$(BIN)/bandit -q -c pyproject.toml -r common schemas workers eventguard
	git ls-files -z | xargs -0 $(BIN)/detect-secrets-hook --baseline .secrets.baseline

# Container, compose, Kubernetes, RabbitMQ and Prometheus files, checked with the real tools.
deploy-check: $(STAMP)
	bash scripts/deploy-tools.sh check

services:
	bash scripts/services.sh

# @asyncapi/parser (npm) into .cache/asyncapi, for the AsyncAPI test (exit 3: no node, it skips).
asyncapi-tools:
	bash scripts/asyncapi-tools.sh || [ $$? -eq 3 ]

# amqplib for the Node example of docs/connect.md (into .cache/node, gitignored).
node-deps:
	bash scripts/node-deps.sh

# Debian's chromium and axe-core (npm, under .cache/) for the console's browser tests.
browser:
	bash scripts/browser.sh

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

integration: $(STAMP) services
	$(BIN)/python -m pytest -q tests/integration

e2e: $(STAMP) services
	EVENTGUARD_E2E_RESULTS=bench/results/e2e.json $(BIN)/python -m pytest -q tests/e2e -m "e2e and not soak" --durations=10

soak: $(STAMP) services
	EVENTGUARD_SOAK_SECONDS=1800 EVENTGUARD_E2E_RESULTS=bench/results/e2e.json $(BIN)/python -m pytest -q tests/e2e -m soak -s

bench: $(BENCH_STAMP) services
	for b in bench/bench_*.py; do echo "== $$b"; LITELLM_LOCAL_MODEL_COST_MAP=True $(BIN)/python -m bench.$$(basename $$b .py) || exit 1; done

# The project image, built with podman (or docker); the base comes from Debian's packages when
# no registry answers. Build times and size go to bench/results/containers.json.
image:
	bash scripts/containers.sh image

# The four workers as four containers of that image on the host network, under load from the
# host (own vhost and key prefix), then the host-network compose file; removes what it started.
containers-e2e: $(STAMP) services image
	bash scripts/containers-e2e.sh

# Node kills on a private three-node RabbitMQ cluster and Redis Sentinel, under load
# (tests/chaos; figures in bench/results/chaos.json). Never beside the benchmarks.
chaos: $(STAMP)
	bash scripts/chaos.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache schema-out
