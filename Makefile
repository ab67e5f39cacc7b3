# The two commands of the README: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= development.ini
# make run PORT=6544: another port than the ini's (development.ini reads http_port).
PORT ?=
PORT_VARS := $(if $(PORT),http_port=$(PORT))
PYTEST_ARGS ?=
# make test: the suite in two pytest-xdist workers, one test file each at a time (much of it
# waits on servers it starts; docs/testing.md has the figures). TEST_WORKERS=0: one process.
TEST_WORKERS ?= 2
PROCESSES ?= 2
NGINX ?= /usr/sbin/nginx
# make cluster HTTPS_PORT=9443 HTTP_PORT=9088 CLUSTER_DIR=/tmp/c: where nginx listens (the
# processes listen on Unix sockets, in CLUSTER_DIR/sockets/) and where the cluster keeps its
# state; cluster-stop and cluster-restart need the same CLUSTER_DIR.
HTTPS_PORT ?= 8443
HTTP_PORT ?= 8088
CLUSTER_DIR ?= .cluster
# make benchmark BENCHMARK_ARGS=sweep|scale (docs/performance.md)
BENCHMARK_ARGS ?=
# make benchmark-django: Django 5.2 in a venv of its own, for the outside comparison only.
DJANGO_VENV ?= .venv-django

.PHONY: run test initdb e2e screenshots benchmark benchmark-django loadtest clean cluster cluster-stop cluster-restart

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip setuptools wheel

# .test-deps installs a superset of these extras: a venv that has them (and is newer than the
# package's metadata) needs no second `pip install`, which wants the network.
$(VENV)/.run-deps: $(BIN)/python setup.cfg pyproject.toml
	@if [ $(VENV)/.test-deps -nt setup.cfg ] && [ $(VENV)/.test-deps -nt pyproject.toml ]; then \
	  echo "$(VENV): the test dependencies include the run dependencies"; \
	else $(BIN)/pip install --quiet -e '.[dev,clients,postgresql]'; fi
	touch $@

$(VENV)/.test-deps: $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/pip install --quiet -e '.[dev,clients,testing,postgresql]'
	touch $@

initdb: $(VENV)/.run-deps
	$(BIN)/appserver $(CONFIG) initdb --demo

# First the settings and a free port (one line if not: pserve's reloader would wait for a
# file to change after a failed start), then the database, then the server.
# pserve imports pyramid (and its pkg_resources warning) before appserver can filter it.
run: $(VENV)/.run-deps
	@$(BIN)/appserver $(CONFIG) check --no-database $(if $(PORT),--port $(PORT))
	$(BIN)/appserver $(CONFIG) initdb --demo
	PYTHONWARNINGS='ignore:pkg_resources is deprecated:UserWarning' $(BIN)/pserve --reload $(CONFIG) $(PORT_VARS)

test: $(VENV)/.test-deps
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

e2e: $(VENV)/.test-deps
	$(BIN)/pytest tests/e2e $(PYTEST_ARGS)

screenshots: $(VENV)/.test-deps
	APPSERVER_SCREENSHOTS=docs $(BIN)/pytest tests/e2e -q $(PYTEST_ARGS)

benchmark: $(VENV)/.test-deps
	$(BIN)/python -m benchmarks $(BENCHMARK_ARGS)

$(DJANGO_VENV)/bin/python:
	$(PYTHON) -m venv $(DJANGO_VENV)
	$(DJANGO_VENV)/bin/pip install --quiet 'django>=5.2,<5.3' waitress 'psycopg[binary]'

benchmark-django: $(VENV)/.test-deps $(DJANGO_VENV)/bin/python
	DJANGO_PYTHON=$(abspath $(DJANGO_VENV))/bin/python $(BIN)/python -m benchmarks django

# The load-and-fault suite at full length, on SQLite and on two processes sharing a private
# PostgreSQL (docs/loadtest.md). Reports: loadtest-report/. A short run is part of `make test`.
loadtest: $(VENV)/.test-deps
	$(BIN)/python -m tests.load --profile full --target both --out loadtest-report

# Debian's nginx, installed when missing (as root; otherwise say what to run).
$(NGINX):
	@if [ "$$(id -u)" = 0 ]; then \
	  echo "installing Debian's nginx-light"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null \
	  || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null; }; \
	else echo "make cluster: nginx is missing: sudo apt-get install nginx-light"; exit 1; fi

# production.ini behind nginx on https://127.0.0.1:$(HTTPS_PORT): PROCESSES waitress
# processes on PostgreSQL at 127.0.0.1:5432 (docs/deployment.md). State, logs, sockets and
# the CA in $(CLUSTER_DIR)/.
cluster: $(VENV)/.run-deps $(NGINX)
	$(BIN)/python deploy/cluster.py start --processes $(PROCESSES) --https-port $(HTTPS_PORT) \
	  --http-port $(HTTP_PORT) --run-dir $(CLUSTER_DIR)

# Neither installs anything: the processes running now came from this venv, and a rolling
# restart must not change it under them (nor need the network).
cluster-stop:
	@if [ -x $(BIN)/python ]; then $(BIN)/python deploy/cluster.py stop --run-dir $(CLUSTER_DIR); \
	else python3 deploy/cluster.py stop --run-dir $(CLUSTER_DIR); fi

cluster-restart:
	@[ -x $(BIN)/python ] || { echo "make cluster-restart: no $(VENV): start a cluster first (make cluster)"; exit 1; }
	$(BIN)/python deploy/cluster.py restart --run-dir $(CLUSTER_DIR)

clean:
	rm -rf $(VENV) $(DJANGO_VENV) *.egg-info .pytest_cache .hypothesis appserver.sqlite loadtest-report
