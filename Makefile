# Every target bootstraps .venv itself, so `make run` / `make test` work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP_INSTALL := $(BIN)/python -m pip install --quiet --disable-pip-version-check

.DEFAULT_GOAL := help
.PHONY: help install run test lint fmt migrate bench lock clean

help:  ## Show the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11) and "Python >= 3.11 is required")'
	$(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade pip
	$(PIP_INSTALL) --constraint constraints.txt --editable '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## Create .venv and install the project with its dev tools

run: $(STAMP)  ## Migrate the database and serve on http://127.0.0.1:8000 (docs at /docs)
	$(BIN)/fasttrack serve --host 127.0.0.1 --port 8000

test: $(STAMP)  ## Run the test suite with coverage (SQLite; PostgreSQL/Redis with TEST_DATABASE_URL/TEST_REDIS_URL)
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

lint: $(STAMP)  ## ruff check, ruff format --check, mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)  ## Format and autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

migrate: $(STAMP)  ## Apply database migrations
	$(BIN)/fasttrack migrate

lock: $(STAMP)  ## Re-pin constraints.txt from the installed environment
	@{ echo "# Exact versions of every dependency, direct and transitive (regenerate with: make lock)."; \
	   $(BIN)/python -m pip freeze --exclude-editable | grep -iv '^fasttrack'; } > constraints.txt

bench: $(STAMP)  ## Benchmark against a bare FastAPI app with wrk (DB=postgres for PostgreSQL)
	$(BIN)/python bench/run.py --db $(or $(DB),sqlite) $(BENCH_ARGS)

clean:  ## Remove the virtualenv and caches
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
