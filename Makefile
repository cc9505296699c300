# sync-daemon: every target sets itself up (virtualenv, packages, PostgreSQL for the tests).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
BENCH_ARGS ?=  # e.g. make bench BENCH_ARGS="--sizes 100" for a quick run

.DEFAULT_GOAL := help
.PHONY: help install demo test lint unit bench clean

help: ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit("Python 3.11+ is required") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create the virtualenv and install the package with its dev tools

demo: $(STAMP) ## Run the daemon against the built-in sandbox servers and show what it did
	$(BIN)/python -m sync_daemon.sandbox demo

lint: $(STAMP) ## ruff and mypy --strict
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) lint ## Lint, then every test, SQLite and PostgreSQL (installs PostgreSQL if absent)
	bash scripts/ensure-postgres.sh
	$(BIN)/pytest

unit: $(STAMP) ## Only the fast unit tests
	$(BIN)/pytest tests/unit

bench: $(STAMP) ## Benchmarks (not part of make test; ~35 min); results go to bench/RESULTS.md
	$(BIN)/python -m bench.syncro_rate
	$(BIN)/python -m bench.msp_scale $(BENCH_ARGS)
	$(BIN)/python -m bench.planning

clean: ## Remove the virtualenv, caches and demo files
	rm -rf $(VENV) .demo .pytest_cache .mypy_cache .ruff_cache *.egg-info
