# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= development.ini
PYTEST_ARGS ?=
# make benchmark BENCHMARK_ARGS=sweep|scale (docs/performance.md)
BENCHMARK_ARGS ?=

.PHONY: run test initdb e2e screenshots benchmark loadtest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

$(VENV)/.run-deps: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,postgresql]'
	touch $@

$(VENV)/.test-deps: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,testing,postgresql]'
	touch $@

initdb: $(VENV)/.run-deps
	$(BIN)/appserver $(CONFIG) initdb --demo

# pserve imports pyramid (and its pkg_resources warning) before appserver can filter it.
run: initdb
	PYTHONWARNINGS='ignore:pkg_resources is deprecated:UserWarning' $(BIN)/pserve $(CONFIG) --reload

test: $(VENV)/.test-deps
	$(BIN)/pytest $(PYTEST_ARGS)

e2e: $(VENV)/.test-deps
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

screenshots: $(VENV)/.test-deps
	APPSERVER_SCREENSHOTS=docs $(BIN)/pytest tests/e2e -q $(PYTEST_ARGS)

benchmark: $(VENV)/.test-deps
	$(BIN)/python -m benchmarks $(BENCHMARK_ARGS)

# The load-and-fault suite at full length, on SQLite and on two processes sharing a private
# PostgreSQL (docs/loadtest.md). Reports: loadtest-report/. A short run is part of `make test`.
loadtest: $(VENV)/.test-deps
	$(BIN)/python -m tests.load --profile full --target both --out loadtest-report

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .hypothesis appserver.sqlite loadtest-report
