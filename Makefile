# ytproxy: `make run` serves on http://127.0.0.1:8000; `make test` runs the whole suite.
# Both set up everything they need first (a virtualenv in .venv, and Debian packages
# when run as root).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(abspath $(VENV))/bin
export PATH := $(BIN):$(PATH)

.PHONY: run test test-fast image-test demo lint format bench screenshots vendor install install-test clean

run: install
	bash scripts/install-system-deps.sh run
	$(BIN)/python app.py

test: install-test
	bash scripts/install-system-deps.sh test
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Everything but the minute-long live soak and the browser tests.
test-fast: install-test
	$(BIN)/python -m pytest -m "not slow and not browser" $(PYTEST_ARGS)

# Builds the Dockerfile with buildah on a stand-in python:3.11-slim made from Debian
# packages, starts it as its non-root user and checks /health and the HEALTHCHECK (root;
# see scripts/image-test.sh and DEPLOYMENT.md). CI runs it after `make test`.
image-test:
	bash scripts/image-test.sh

# The gateway with the test suite's local origin and demo channels: everything works
# offline (see scripts/demo.py).
demo: install
	bash scripts/install-system-deps.sh run
	PYTHONPATH=.:tests/plugins ALLOW_PRIVATE_NETWORKS=true $(BIN)/python scripts/demo.py $(DEMO_ARGS)

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install-test
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install-test
	bash scripts/install-system-deps.sh bench
	$(BIN)/python -m bench

screenshots: install-test
	bash scripts/install-system-deps.sh test
	$(BIN)/python -m tests.screenshots

vendor:
	bash scripts/vendor-assets.sh

install: $(VENV)/.installed
install-test: $(VENV)/.installed-test

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,dev]'
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info screenshots .mypy_cache .ruff_cache
