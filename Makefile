# Maeul: `make run` for the whole demo, `make test` for the whole suite. Each target prepares the
# machine first (scripts/bootstrap.sh), which is quick when nothing has changed.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
# Empty: the bootstrap picks the newest python3.11-3.13 on PATH.
PYTHON ?=
BIN := $(VENV)/bin
BOOTSTRAP := VENV="$(VENV)" PYTHON="$(PYTHON)" scripts/bootstrap.sh

# Two workers, a test file each at a time: most tests wait on brokers, gateways and speakers,
# and every worker has its own Mosquitto and databases. The files go out in the order the suite
# puts them (slowest first, tests/conftest.py), not reordered by their number of tests.
PYTEST_FLAGS ?= -q -rfEs --tb=short --color=auto -n 2 --dist loadfile --no-loadscope-reorder
PYTEST_ARGS ?=
ARGS ?=
RUFF_PATHS ?= gateway devices audio wire maeul tests bench
MYPY_PATHS ?= gateway devices audio wire maeul

.PHONY: help bootstrap run test bench lint fmt migrate lock clean distclean

help:
	@echo "make run       the demo: broker, database, gateway and simulated speakers (ARGS=...)"
	@echo "make test      the test suite (PYTEST_ARGS=... to pass more, e.g. -k broker)"
	@echo "make bench     the benchmarks (ARGS=...)"
	@echo "make lint      ruff check, ruff format --check, mypy (strict)"
	@echo "make fmt       ruff format and ruff check --fix"
	@echo "make migrate   migrate GATEWAY_DATABASE_URL to the latest schema"
	@echo "make lock      renew requirements/*.lock from pyproject.toml (newest allowed releases)"
	@echo "make clean     caches and build output; make distclean also removes $(VENV) and var/"

bootstrap:
	@$(BOOTSTRAP)

run: bootstrap
	$(BIN)/maeul run $(ARGS)

test:
	@$(BOOTSTRAP) --with-postgres --with-ffmpeg
	$(BIN)/pytest $(PYTEST_FLAGS) $(PYTEST_ARGS)

bench: bootstrap
	@$(BOOTSTRAP) --with-ffmpeg
	$(BIN)/python -m bench $(ARGS)

# Every check runs and the target fails if any failed, so one run shows all the problems.
lint: bootstrap
	@status=0; \
	$(BIN)/ruff check $(RUFF_PATHS) || status=1; \
	$(BIN)/ruff format --check $(RUFF_PATHS) || status=1; \
	$(BIN)/mypy $(MYPY_PATHS) || status=1; \
	exit $$status

fmt: bootstrap
	$(BIN)/ruff format $(RUFF_PATHS)
	$(BIN)/ruff check --fix $(RUFF_PATHS)

migrate: bootstrap
	$(BIN)/maeul db upgrade

# The lock files pin every dependency with its hashes, for every Python the project supports;
# make run, make test, CI and the Dockerfile install from them. uv resolves; it is not needed
# for anything else.
LOCK_FLAGS := --universal --python-version 3.11 --generate-hashes --quiet
lock: bootstrap
	$(BIN)/python -m pip install -q --disable-pip-version-check uv
	$(BIN)/uv pip compile pyproject.toml --extra gateway $(LOCK_FLAGS) -o requirements/runtime.lock
	$(BIN)/uv pip compile pyproject.toml --extra gateway --extra dev $(LOCK_FLAGS) -o requirements/dev.lock

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist test-artifacts *.egg-info
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var
