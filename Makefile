# Two commands on a fresh machine: `make demo` and `make test` (see README).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.nerfloc-installed
NERFSTUDIO_VERSION := 1.1.5

.PHONY: install demo demo-all test test-fast lint clean-demo

$(STAMP): pyproject.toml requirements/runtime.txt requirements/dev.txt requirements/no-deps.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements/runtime.txt -r requirements/dev.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements/no-deps.txt
	$(BIN)/python -m pip install --quiet --no-deps nerfstudio==$(NERFSTUDIO_VERSION)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

demo: install
	PATH="$(abspath $(BIN)):$$PATH" bash examples/demo.sh

demo-all: install
	PATH="$(abspath $(BIN)):$$PATH" NERFLOC_DEMO_METHODS="crossfire nerfmatch neuraloc posemap" bash examples/demo.sh

test: install
	$(BIN)/python -m pytest -q --durations=15 tests

test-fast: install
	$(BIN)/python -m pytest -q -m "not slow" tests

lint: install
	$(BIN)/ruff check nerfloc_plugins method_configs tests benchmarks
