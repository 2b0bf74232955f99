# labscope: `make demo` and `make test` work on a fresh machine (they create .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit e2e bench clean proto docs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/labscope demo

# Everything, as CI runs it: lint, then every test (unit and e2e).
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy collector node_agent modules messages gui labscope

# The fast tier: no test that starts a process (under a minute).
unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e"

# The tests that start real labscope processes.
e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e

bench: $(STAMP)
	$(BIN)/labscope bench --json bench-results.json --markdown bench-results.md

proto: $(STAMP)
	$(BIN)/python messages/generate.py

# Rewrite docs/protocol.md's generated tables (request/update types, counters) from the code.
docs: $(STAMP)
	$(BIN)/python -m labscope.protodoc docs/protocol.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
