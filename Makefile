# rtm2 — the two commands a new user needs are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

## run: start a server with the embedded engine on ws://127.0.0.1:7001 (ARGS="--port 7002" etc.)
run: $(VENV)/.installed
	$(BIN)/rtm2 serve $(ARGS)

## lint: ruff and mypy --strict
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy src

## test: lint, then the whole test suite against real servers
test: lint
	$(BIN)/pytest

## bench: the benchmarks recorded in docs/PERFORMANCE.md
bench: $(VENV)/.dev-installed
	$(BIN)/rtm2 bench fanout
	$(BIN)/rtm2 bench fanout --channel message
	$(BIN)/rtm2 bench fanout --engine redis://127.0.0.1:6379/0 --nodes 2
	$(BIN)/rtm2 bench connections
	$(BIN)/python bench/ws_libraries.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
