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
	@echo "            SCENARIO=worse-challenger adds a worse model that the gate stops"
	@echo "            PROFILE=production runs it on Celery workers, PostgreSQL, Redis and S3 (docs/production.md)"
	@echo "make test   set up .venv and run every test (unit, dag.test(), real servers)"
	@echo "make bench  run the benchmarks and rewrite docs/benchmarks.md"
	@echo "make docs   build the docs site into site/ (mkdocs build --strict)"
	@echo "make down   stop what 'make demo' started (both profiles)"

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pip, not uv: torch==2.13.0 then comes from the local CPU wheel, not a 3 GB CUDA download.
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	# KServe's InferenceService models, read (never imported) by tests/kserve_api.py as the schema:
	# the kserve package itself cannot be installed next to Airflow (psutil<6 vs >=6.1).
	$(BIN)/python -m pip download --quiet --no-deps --dest $(VENV)/schemas kserve==0.21.0
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian packages that integration-test fixtures start on loopback: PostgreSQL (MLflow's store),
# Prometheus and its Pushgateway (the KServe canary analysis), Redis (the production profile's broker and
# online store); chromium drives the UI plugin's browser test; npm fetches mermaid for the docs site (`make docs`).
system-deps:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; }
	@command -v redis-server >/dev/null || test -x /usr/bin/redis-server || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends redis-server >/dev/null; }
	@command -v prometheus >/dev/null && command -v prometheus-pushgateway >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		--no-install-recommends prometheus prometheus-pushgateway >/dev/null; }
	@command -v chromium >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		chromium >/dev/null; }
	@command -v npm >/dev/null || { \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
		npm >/dev/null; }

lint: install
	$(BIN)/ruff check $(wildcard provider dags plugins tests tools feature_repo docs/examples)
	$(BIN)/ruff format --check $(wildcard provider dags plugins tests tools feature_repo docs/examples)
	$(BIN)/mypy
	$(BIN)/lint-imports

test: install system-deps lint docs
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadgroup --durations=15

# make demo SCENARIO=worse-challenger: the same story, then a worse model that the gate stops.
# make demo PROFILE=production: the same story on Celery workers, PostgreSQL, Redis and S3 (moto), which
# need `make system-deps`.
demo: install
	$(BIN)/python -m tools.demo up $(if $(SCENARIO),--scenario $(SCENARIO)) $(if $(PROFILE),--profile $(PROFILE))

# Stops both profiles' servers; their data stays (make clean removes it).
down:
	@test -x $(BIN)/python && $(BIN)/python -m tools.demo down || true

bench: install
	$(BIN)/python -m tests.bench

# The docs site in site/; --strict turns every warning (a broken link, a missing snippet) into an error.
# NO_MKDOCS_2_WARNING silences the theme's end-of-life notice (printed on every build), not our warnings.
# The site serves mermaid.js itself (docs/javascripts/, gitignored), so its diagrams render offline: npm
# fetches the pinned package once into .venv/mermaid/, checked against its SHA-512 (see mkdocs.yml).
docs: MERMAID_VERSION := 11.17.2
docs: MERMAID_SHA512 := 57a2b70bc101744b0f1595d228c25eea9a50384371b87011afd1af1d7e21878ee501b84c443f6a7f8a042bb2e869143150b31af34feab798073bbdda0a578106
docs: MERMAID_JS = $(VENV)/mermaid/mermaid-$(MERMAID_VERSION).min.js
docs: install
	@test -s $(MERMAID_JS) || { \
		command -v npm >/dev/null || { echo "make docs: npm is missing; run 'make system-deps'" >&2; exit 1; }; \
		mkdir -p $(VENV)/mermaid && npm pack --silent --pack-destination $(VENV)/mermaid \
			mermaid@$(MERMAID_VERSION) >/dev/null && \
		echo "$(MERMAID_SHA512)  $(VENV)/mermaid/mermaid-$(MERMAID_VERSION).tgz" | sha512sum --check --quiet && \
		tar -xzOf $(VENV)/mermaid/mermaid-$(MERMAID_VERSION).tgz package/dist/mermaid.min.js >$(MERMAID_JS).part && \
		mv $(MERMAID_JS).part $(MERMAID_JS) && rm $(VENV)/mermaid/mermaid-$(MERMAID_VERSION).tgz; }
	install -D -m 644 $(MERMAID_JS) docs/javascripts/mermaid.min.js
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean: down
	rm -rf .demo .production data site .pytest_cache .ruff_cache
