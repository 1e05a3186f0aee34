# rtm2 — the two commands a new user needs are `make run` and `make test`.
#
# Both install from the committed lock (requirements/*.txt: exact versions with hashes), so a
# new user, CI and the developer who tested a change get the same packages. `make lock`
# refreshes the lock on purpose; `make test-latest` tries the newest releases in a throwaway venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
ARGS   ?=
PIP    := $(BIN)/python -m pip --disable-pip-version-check

# pip-tools only writes the lock; it is pinned here so that a refresh is itself repeatable.
PIP_TOOLS   := pip-tools==7.6.2
COMPILE     := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-find-links \
               --build-deps-for=editable
LOCK_VENV   := .venv-lock
PYTEST_ARGS ?=
PYTEST_WORKERS ?= 2

.PHONY: run test test-fast test-latest lint lock bench bench-check clean proto compile \
        clean-compiled compile-test

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The package itself is installed editable, without dependencies and without build isolation:
# everything it needs, the build backend included, came from the lock just before.
$(VENV)/.installed: requirements/runtime.txt pyproject.toml | $(BIN)/python
	$(PIP) install --quiet --require-hashes -r requirements/runtime.txt
	$(PIP) install --quiet --no-deps --no-build-isolation -e .
	@touch $@

$(VENV)/.dev-installed: requirements/dev.txt $(VENV)/.installed
	$(PIP) install --quiet --require-hashes -r requirements/dev.txt
	@touch $@

## run: start a server with the embedded engine on ws://127.0.0.1:7001 (ARGS="--port 7003" etc.)
run: $(VENV)/.installed
	$(BIN)/rtm2 serve $(ARGS)

## lint: ruff and mypy --strict
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples
	$(BIN)/mypy src

## test: lint, then every test layer (unit, e2e, redis, cluster, browser) against real servers,
## spread over PYTEST_WORKERS processes (pytest-xdist; a test file stays in one process, so its
## shared servers do too): ~7 min with 2 instead of ~13 with PYTEST_WORKERS=0 (this process).
test: lint
	$(BIN)/pytest --durations=15 -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

## test-fast: the unit layer only (no sockets, no subprocesses): seconds, not minutes
test-fast: $(VENV)/.dev-installed
	$(BIN)/pytest -m unit -q $(PYTEST_ARGS)

## test-latest: lint and the whole suite on the newest releases, in a throwaway venv
test-latest:
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(PYTHON) -m venv "$$tmp/venv"; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade pip; \
	"$$tmp/venv/bin/python" -m pip install --quiet --upgrade --upgrade-strategy eager -e '.[dev]'; \
	"$$tmp/venv/bin/python" -m pip list --format=freeze; \
	"$$tmp/venv/bin/ruff" check src tests bench examples; \
	"$$tmp/venv/bin/ruff" format --check src tests bench examples; \
	"$$tmp/venv/bin/mypy" --cache-dir "$$tmp/mypy" src; \
	"$$tmp/venv/bin/pytest" -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

## lock: re-resolve requirements/runtime.txt and requirements/dev.txt from pyproject.toml
lock:
	test -x $(LOCK_VENV)/bin/pip-compile || \
		($(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install --quiet $(PIP_TOOLS))
	$(LOCK_VENV)/bin/pip-compile $(COMPILE) --upgrade --output-file requirements/runtime.txt pyproject.toml
	$(LOCK_VENV)/bin/pip-compile $(COMPILE) --upgrade --extra dev --output-file requirements/dev.txt pyproject.toml

## bench: the benchmarks recorded in docs/PERFORMANCE.md
bench: $(VENV)/.dev-installed
	$(BIN)/rtm2 bench fanout
	$(BIN)/rtm2 bench fanout --channel message
	$(BIN)/rtm2 bench fanout --engine redis://127.0.0.1:6379/0 --nodes 2
	$(BIN)/rtm2 bench connections
	$(BIN)/rtm2 bench history
	$(BIN)/python bench/ws_libraries.py
	$(BIN)/rtm2 bench peers --runs 3

## bench-check: instructions per publish under callgrind against bench/callgrind_baseline.json
## (fails on > 5 % more; refresh with `$(BIN)/python bench/callgrind_publish.py --update`)
bench-check: $(VENV)/.dev-installed
	$(BIN)/python bench/callgrind_publish.py --check

## compile: the optional mypyc build of the hot modules, into build/mypyc (needs gcc and the
## Python headers). `rtm2 serve` loads it while no source file has changed since, pure Python
## otherwise (RTM2_COMPILED=0: pure Python anyway; =1: the build or an error).
compile: $(VENV)/.dev-installed
	$(BIN)/python -c 'import sys, rtm2._compiled as c; sys.exit(c.main(sys.argv[1:]))' build

## clean-compiled: remove the mypyc build (back to pure Python)
clean-compiled:
	rm -rf build/mypyc build/mypyc.work

## compile-test: build, then the unit layer, the publish path's e2e tests and history (what it
## stores must read back alike on either build) on the build.
## Left out: unit tests that hand the compiled classes stand-ins (a fake connection, a
## SimpleNamespace hub) or replace their methods; the build checks the declared types.
COMPILE_TESTS ?= tests/e2e/test_message_channels.py tests/e2e/test_reliability.py \
                 tests/e2e/test_compiled.py tests/server/test_fan_out.py tests/e2e/test_history.py
COMPILE_UNIT_SKIP := --ignore tests/server/test_session_backlog.py \
    --ignore tests/server/test_session_lifecycle.py --ignore tests/server/test_session_table.py \
    --deselect tests/server/test_bus.py::test_a_node_routes_messages_by_the_kind_of_their_subject \
    --deselect tests/server/test_orphans.py::test_the_node_hands_each_orphan_to_the_service_that_cleans_it_up
compile-test: compile
	RTM2_COMPILED=1 $(BIN)/pytest -q -m unit $(COMPILE_UNIT_SKIP) $(PYTEST_ARGS)
	RTM2_COMPILED=1 $(BIN)/pytest -q $(COMPILE_TESTS) $(PYTEST_ARGS)

## proto: regenerate rtm2.sidecar's protobuf code (committed; a unit test checks it is current)
proto: $(VENV)/.dev-installed
	$(BIN)/python -m rtm2.sidecar.proto.generate

clean:
	rm -rf $(VENV) $(LOCK_VENV) .mypy_cache .pytest_cache .ruff_cache
