# The two commands: `make run` and `make test`. Everything else is for developers.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# `make run` starts the service on http://127.0.0.1:8080 with its embedded defaults and the
# bundled models; settings: SWAPWATCH_* variables or `make run ARGS="--config swapwatch.toml"`.
ARGS ?=

.PHONY: run test test-cluster test-containers test-all bench bench-accuracy lint clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "swapwatch needs Python 3.11 (set PYTHON=/path/to/python3.11)")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: $(INSTALLED)
	$(BIN)/swapwatch serve $(ARGS)

test: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow and not cluster and not container"

# The cluster test: streams on a local two-node Ray cluster (installs the ray extra).
test-cluster: $(INSTALLED)
	$(BIN)/python -m pip install --quiet -e '.[ray]'
	$(BIN)/python -m pytest -m cluster

# deploy/'s images built and its compose file run with podman (as root; .ci/run sets podman up).
test-containers: $(INSTALLED)
	$(BIN)/python -m pytest -m container

test-all: $(INSTALLED)
	$(BIN)/python -m pytest

bench: $(INSTALLED)
	$(BIN)/python benchmarks/pipeline.py

# Needs ../shared/data (the development data; never committed).
bench-accuracy: $(INSTALLED)
	$(BIN)/python benchmarks/accuracy.py

lint: $(INSTALLED)
	$(BIN)/python -m pip install --quiet ruff mypy
	$(BIN)/ruff check swapwatch tests benchmarks
	$(BIN)/mypy swapwatch
	$(BIN)/mypy benchmarks  # apart: checked together, ray's stubs resolve differently

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
