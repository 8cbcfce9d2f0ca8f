# wfed developer tasks. `make` alone lists the targets.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Interpreter used to create the virtualenv and to run pip-compile: Python 3.11.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements.lock

CONFIG ?= config.toml
PYTEST_ARGS ?=
# Test processes `make test` runs at once (pytest-xdist): most tests wait on databases
# and daemon processes, so a few at a time keep a 2-core machine busy. 0 runs one process.
TEST_WORKERS ?= 3
BENCH_ARGS ?=
# Extra pip-compile options for `make lock`, e.g. LOCK_ARGS=--upgrade
# or LOCK_ARGS='--upgrade-package asyncmy'.
LOCK_ARGS ?=
# Versions of the throwaway tools `make lock` runs in a temporary venv.
PIP_TOOLS_VERSION ?= 7.6.2
LOCK_PIP_VERSION ?= 26.3

export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help .venv run test lint format bench lock clean distclean

help: ## List the targets
	@echo "wfed make targets:"
	@grep -E '^[a-zA-Z_.-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  %-10s %s\n", $$1, $$2}'
	@echo "Variables: PYTEST_ARGS, TEST_WORKERS (=$(TEST_WORKERS)), BENCH_ARGS, CONFIG (=$(CONFIG)), LOCK_ARGS, PYTHON (=$(PYTHON))"

.venv: $(STAMP) ## Create/refresh .venv from requirements.lock (+ editable wfed)

# The stamp is rebuilt whenever the lock or pyproject.toml is newer than it.
# setuptools is pinned (with hashes) in the lock, so the editable install can
# run without build isolation and without reaching an index for build deps.
$(STAMP): $(LOCK) pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: neither python3.11 nor python3 is on PATH" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --no-deps --no-build-isolation -e .
	touch $@

run: .venv ## Upgrade the database schema, then run the daemon (CONFIG=config.toml)
	$(BIN)/wfectl --config $(CONFIG) db upgrade
	exec $(BIN)/wfed --config $(CONFIG)

test: .venv ## Run the test suite (TEST_WORKERS=3 processes; PYTEST_ARGS=... passed to pytest)
	@rc=0; $(BIN)/pytest -n $(TEST_WORKERS) --dist worksteal --durations=25 $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then \
		echo "make test: pytest ran no tests (exit 5); treating that as a failure" >&2; \
	fi; \
	exit $$rc

.PHONY: chaos
chaos: .venv ## Run the fault-injection tier at full scale (tests/chaos; see docs/reliability.md)
	WFED_CHAOS_SCALE=full $(BIN)/pytest -p no:cacheprovider --durations=0 tests/chaos $(PYTEST_ARGS)

lint: .venv ## ruff check, ruff format --check, mypy, lint-imports (the layers)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache

format: .venv ## Reformat and autofix with ruff
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: .venv ## Run the benchmarks (python -m bench; BENCH_ARGS=...)
	$(BIN)/python -m bench $(BENCH_ARGS)

# pip-compile runs in a throwaway venv under /tmp, and with the local pip
# configuration switched off (PIP_CONFIG_FILE=/dev/null, no PIP_FIND_LINKS etc.)
# so that the lock only names PyPI files and their PyPI hashes.
# --build-deps-for editable + --allow-unsafe pin setuptools for `make .venv`.
lock: ## Regenerate requirements.lock with pip-compile (LOCK_ARGS=--upgrade to bump)
	@test -n "$(PYTHON)" || { echo "error: neither python3.11 nor python3 is on PATH" >&2; exit 1; }
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
		|| { echo "error: the lock is for Python 3.11, but $(PYTHON) is not 3.11" >&2; exit 1; }
	@set -euo pipefail; \
	tmp=$$(mktemp -d /tmp/wfed-lock.XXXXXX); trap 'rm -rf "$$tmp"' EXIT; \
	echo "creating throwaway pip-tools venv in $$tmp"; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install -q "pip==$(LOCK_PIP_VERSION)" "pip-tools==$(PIP_TOOLS_VERSION)"; \
	env -u PIP_FIND_LINKS -u PIP_INDEX_URL -u PIP_EXTRA_INDEX_URL -u PIP_CONSTRAINT \
		PIP_CONFIG_FILE=/dev/null CUSTOM_COMPILE_COMMAND="make lock" \
		"$$tmp/venv/bin/pip-compile" --quiet --extra dev --generate-hashes --strip-extras \
		--allow-unsafe --build-deps-for editable $(LOCK_ARGS) -o $(LOCK) pyproject.toml
	@echo "wrote $(LOCK); run 'make .venv' to install it"

clean: ## Remove caches and build artefacts (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +

distclean: clean ## clean, and remove .venv too
	rm -rf $(VENV)
