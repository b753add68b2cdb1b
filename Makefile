# The two commands a new user needs are `make demo` and `make test`; see README.md.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
# Re-install whenever pyproject.toml changes.
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_WORKERS ?= 2

.PHONY: help install system-deps lint test demo down bench docs clean

help:
	@echo "make demo   set up .venv and run the ML pipeline under a real Airflow scheduler (see README)"
	@echo "make test   set up .venv and run every test (unit, dag.test(), real servers)"
	@echo "make bench  run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make docs   build the docs site into site/ (mkdocs build --strict)"
	@echo "make down   stop what 'make demo' started"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pip, not uv: torch==2.13.0 then comes from the local CPU wheel, not a 3 GB CUDA download.
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# KServe's InferenceService models, read (never imported) by tests/hooks/test_kserve.py as the schema:
	# the kserve package itself cannot be installed next to Airflow (psutil<6 vs >=6.1).
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/schemas kserve==0.21.0
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian packages that integration-test fixtures start on loopback: PostgreSQL (MLflow's store),
# Prometheus and its Pushgateway (the KServe canary analysis); chromium drives the UI plugin's browser test.
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus prometheus-pushgateway >/dev/null; }
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium >/dev/null; }

lint: install
	$(BIN)/ruff check $(wildcard provider dags plugins tests feature_repo docs/examples)
	$(BIN)/lint-imports

test: install system-deps lint docs
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15

demo: install
	$(BIN)/python -m mlops_provider.demo up

down:
	@test -x $(BIN)/python && $(BIN)/python -m mlops_provider.demo down || true

bench: install
	$(BIN)/python -m tests.bench

# The docs site in site/; --strict turns every warning (a broken link, a missing snippet) into an error.
# NO_MKDOCS_2_WARNING silences the theme's end-of-life notice (printed on every build), not our warnings.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean: down
	rm -rf .demo data site .pytest_cache .ruff_cache
