"""The ``cluster`` fixture: ``deploy/cluster.py`` (``make cluster``) for real, once per test
session, shared by tests/test_deployment.py and the browser test in tests/e2e (registered for
the whole suite by ``pytest_plugins`` in tests/conftest.py; started only when a test asks).

Debian's nginx terminates TLS with a certificate from the CA the script generated, in front of
two ``pserve production.ini`` processes sharing a PostgreSQL database of this test run, each on
a Unix socket in the cluster's directory (a pytest temporary directory). nginx listens on
ports the kernel chose free (bound to port 0), so runs of other developers on the machine
never collide with these. The tests trust that CA and nothing else.

Skipped only where nginx is not installed (CI installs it; APPSERVER_REQUIRE_ALL_TESTS=1 turns
a skip into a failure). PostgreSQL only: several processes share one database.
"""
from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
import requests

from appserver.models import get_engine

from .support import ROOT, reset_database, sibling_database

BIN = Path(sys.executable).parent
CLUSTER_SCRIPT = ROOT / "deploy" / "cluster.py"
PROCESS = "X-Appserver-Process"


def load_cluster_module() -> ModuleType:
    """deploy/cluster.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("appserver_deploy_cluster", CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


deploy = load_cluster_module()


def nginx_or_skip() -> None:
    try:
        deploy.find_nginx()
    except deploy.ClusterError:
        pytest.skip("the deployment tests need Debian's nginx (apt-get install nginx-light; .ci/run does)")


def postgresql_or_skip() -> str:
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the deployment tests need PostgreSQL: set TEST_DATABASE_URL")
    return os.environ["TEST_DATABASE_URL"]


def cluster_command(run_dir: Path, *args: str) -> str:
    result = subprocess.run([str(BIN / "python"), str(CLUSTER_SCRIPT), *args, "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_cluster(run_dir: Path, database_url: str, processes: int = 2):
    """``make cluster`` on free ports; returns the Cluster it saved."""
    out = cluster_command(run_dir, "start", "--https-port", str(free_port()), "--http-port", str(free_port()),
                          "--processes", str(processes), "--database-url", database_url)
    cluster = deploy.Cluster.load(run_dir)
    assert f"appserver cluster: {cluster.url}/" in out and str(cluster.ca_file) in out
    # A cluster outside the default folder names it: plain "make cluster-stop" would look
    # in .cluster (an outside review).
    assert f"make cluster-stop CLUSTER_DIR={run_dir}" in out
    return cluster


def stop_cluster(cluster) -> None:
    """``make cluster-stop`` leaves nothing running that it started."""
    started = {name: pid for name, pid in cluster.running().items() if pid}
    cluster_command(cluster.run_dir, "stop")
    assert not any(cluster.running().values())
    for name, pid in started.items():
        assert deploy.gone(pid), f"{name} (pid {pid}) still runs after cluster-stop"


@pytest.fixture(scope="session", params=["postgresql"])
def cluster(request, tmp_path_factory) -> Iterator:
    nginx_or_skip()
    url = sibling_database(postgresql_or_skip(), "cluster")
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    engine.dispose()
    cluster = start_cluster(tmp_path_factory.mktemp("cluster"), url)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


def restore_processes(cluster) -> list[int]:
    """Start again any waitress process that is not running; returns their instances.

    A test that kills a process restarts it at its end, but an assertion that fails first
    leaves it dead, and the next test (a rolling restart: stopping the one survivor) would
    then fail for that reason alone, with a total outage it did not cause."""
    missing = [n for n in cluster.instances if not deploy.live_pid(cluster.pid_file(n), "pserve")]
    for instance in missing:
        cluster.start_process(instance)
    for instance in missing:
        cluster.wait_for_process(instance)
    return missing


def trusting(ca_file: Path) -> requests.Session:
    """A requests session that trusts ``ca_file`` and nothing else."""
    session = requests.Session()
    session.verify = str(ca_file)
    session.trust_env = False  # REQUESTS_CA_BUNDLE, set on many machines, would override verify
    return session


def login(http: requests.Session, cluster, username: str = "fred", password: str | None = None) -> requests.Response:
    response = http.post(cluster.url + "/rest/auth/1/session", timeout=30,
                         json={"username": username, "password": password or f"{username}-password"})
    assert response.status_code == 200, response.text
    return response


def process_names(cluster) -> dict[str, int]:
    """X-Appserver-Process value (host:pid) -> instance, for the processes running now."""
    host = socket.gethostname()
    return {f"{host}:{pid}": int(name.split("-")[1])
            for name, pid in cluster.running().items() if pid and name.startswith("appserver-")}
