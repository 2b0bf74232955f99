# labscope: `make demo` and `make test` work on a fresh machine (they create .venv).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit e2e bench bench-peers clean proto docs fuzz

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python pyproject.toml setup.py collector/_drain.c
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/labscope demo

# Everything, as CI runs it: lint, then every test (unit and e2e). TEST_WORKERS=N runs the suite in N
# pytest-xdist workers, a test file to a worker (a file's module fixtures, such as its NATS cluster,
# start once): 3 on a 2-core machine more than halves the time, but there timing tests failed in two
# of eight runs (start-ups past their deadlines, an agent's heartbeat late), so the default, 0, runs
# it in this one process.
TEST_WORKERS ?= 0
test: $(STAMP) lint
	$(BIN)/python -m pytest -q --durations=15 -n $(TEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy collector node_agent modules messages gui labscope

# The fast tier: no test that starts a process (under a minute).
unit: $(STAMP)
	$(BIN)/python -m pytest -q -m "not e2e" -n $(TEST_WORKERS) --dist loadfile

# The tests that start real labscope processes.
e2e: $(STAMP)
	$(BIN)/python -m pytest -q -m e2e -n $(TEST_WORKERS) --dist loadfile

# The atheris harness over the collector's frame handling (docs/fuzzing.md); never part of `make test`.
# FUZZ_RUNS=N for a shorter or longer run; finds go to .fuzz/corpus, crashing inputs to .fuzz/artifacts.
FUZZ_RUNS ?= 1000000
fuzz: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[fuzz]'
	mkdir -p .fuzz/corpus .fuzz/artifacts
	$(BIN)/python tests/fuzz/fuzz_frames.py -runs=$(FUZZ_RUNS) -artifact_prefix=.fuzz/artifacts/ \
		.fuzz/corpus tests/fuzz/corpus

bench: $(STAMP)
	$(BIN)/labscope bench --json bench-results.json --markdown bench-results.md

# labscope's agent beside Glances and Prometheus node_exporter over the same minute (BENCHMARKS.md,
# "Peers, side by side"); never part of `make test`. Installs the `peers` extra and Debian's exporter.
PEERS_SECONDS ?= 60
bench-peers: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[peers]'
	command -v prometheus-node-exporter >/dev/null || apt-get install -y prometheus-node-exporter
	$(BIN)/python -m labscope.bench_peers --seconds $(PEERS_SECONDS) --json bench-peers.json --markdown bench-peers.md

proto: $(STAMP)
	$(BIN)/python messages/generate.py

# Rewrite docs/protocol.md's generated tables (request/update types, counters) from the code.
docs: $(STAMP)
	$(BIN)/python -m labscope.protodoc docs/protocol.md

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .fuzz
