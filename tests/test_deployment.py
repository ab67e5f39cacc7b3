"""Production as users run it (issue 13): ``deploy/cluster.py`` (``make cluster``) brings up
Debian's nginx terminating TLS with a certificate from a CA it generated, in front of two
``pserve production.ini`` processes sharing PostgreSQL; every test talks https to nginx and
trusts only that CA.

Chromium keeps the ``__Host-``, Secure, HttpOnly cookies (trusting the CA through an NSS
database, not by ignoring certificate errors); the ``jira`` client searches and logs in again
after a revoke; a session made on one process is honoured by the other (``X-Appserver-Process``
says which answered); a process killed mid-run loses no session and no request that was safe
to retry; a rolling restart under load fails no request; PostgreSQL restarted means 503s,
then recovery by itself.

Skipped only where nginx is not installed (CI installs it; APPSERVER_REQUIRE_ALL_TESTS=1 turns
a skip into a failure). Runs on PostgreSQL only: several processes share one database.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
import requests

from appserver.models import get_engine

from .support import ROOT, record_http, reset_database, sibling_database
from .test_cli import BIN, free_port

PYTHON = str(BIN / "python")
CLUSTER_SCRIPT = ROOT / "deploy" / "cluster.py"
NGINX = shutil.which("nginx") or shutil.which("/usr/sbin/nginx")
PROCESS = "X-Appserver-Process"
SEARCH = "/rest/api/2/search?jql=project%3DDEMO&maxResults=5"


def load_cluster_module() -> ModuleType:
    """deploy/cluster.py is a script, not a package module: load it by path."""
    spec = importlib.util.spec_from_file_location("appserver_deploy_cluster", CLUSTER_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


deploy = load_cluster_module()

pytestmark = pytest.mark.skipif(
    NGINX is None, reason="the deployment tests need Debian's nginx (apt-get install nginx-light)"
)


def cluster_command(run_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([PYTHON, str(CLUSTER_SCRIPT), *args, "--run-dir", str(run_dir)],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def start_cluster(run_dir: Path, database_url: str, processes: int = 2):
    """``make cluster`` on free ports; returns the Cluster it saved."""
    ports = [free_port() for _ in range(processes)]
    out = cluster_command(run_dir, "start", "--https-port", str(free_port()), "--http-port", str(free_port()),
                          "--ports", ",".join(map(str, ports)), "--database-url", database_url)
    cluster = deploy.Cluster.load(run_dir)
    assert f"appserver cluster: {cluster.url}/" in out and str(cluster.ca_file) in out
    assert "make cluster-stop" in out
    return cluster


def stop_cluster(cluster) -> None:
    """``make cluster-stop`` leaves nothing running that it started."""
    started = {name: pid for name, pid in cluster.running().items() if pid}
    cluster_command(cluster.run_dir, "stop")
    assert not any(cluster.running().values())
    for name, pid in started.items():
        assert not Path(f"/proc/{pid}").exists() or _state(pid) == "Z", f"{name} ({pid}) still runs"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


@pytest.fixture(scope="module", params=["postgresql"])
def cluster(request, tmp_path_factory) -> Iterator:
    if not os.environ.get("TEST_DATABASE_URL"):
        pytest.skip("the deployment tests need PostgreSQL: set TEST_DATABASE_URL")
    url = sibling_database(os.environ["TEST_DATABASE_URL"], "cluster")
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    engine.dispose()
    run_dir = tmp_path_factory.mktemp("cluster")
    cluster = start_cluster(run_dir, url)
    try:
        yield cluster
    finally:
        stop_cluster(cluster)


@pytest.fixture
def https(cluster, monkeypatch) -> requests.Session:
    """A requests session that trusts the cluster's CA and nothing else. REQUESTS_CA_BUNDLE
    (set on many machines) would silently override Session.verify: drop it."""
    for variable in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(variable, raising=False)
    session = requests.Session()
    session.verify = str(cluster.ca_file)
    return session


def login(http: requests.Session, cluster, username: str = "fred") -> requests.Response:
    response = http.post(cluster.url + "/rest/auth/1/session", timeout=30,
                         json={"username": username, "password": f"{username}-password"})
    assert response.status_code == 200, response.text
    return response


def process_names(cluster) -> dict[str, int]:
    """X-Appserver-Process value -> port, for the processes running now."""
    host = os.uname().nodename
    return {f"{host}:{pid}": int(name.split("-")[1])
            for name, pid in cluster.running().items() if pid and name.startswith("appserver-")}


# --- TLS, redirects, the proxy's headers -----------------------------------------------------


def test_https_with_the_generated_ca_and_http_redirects(cluster, https):
    status = https.get(cluster.url + "/status", timeout=10)
    assert status.status_code == 200 and status.json() == {"state": "RUNNING"}
    assert status.headers["Strict-Transport-Security"] == "max-age=31536000"
    with pytest.raises(requests.exceptions.SSLError):  # no other trust anchor would do
        requests.get(cluster.url + "/status", timeout=10, verify=True)
    plain = https.get(f"http://127.0.0.1:{cluster.http_port}/issues?x=1", allow_redirects=False, timeout=10)
    assert plain.status_code == 301
    assert plain.headers["Location"] == f"{cluster.url}/issues?x=1"


def test_waitress_sees_https_the_real_host_and_the_body_limit(cluster, https):
    """The forwarded headers production.ini trusts: Secure __Host- cookies, https links with
    nginx's host and port; nginx refuses what waitress would (bodies over 1 MiB)."""
    response = login(https, cluster)
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("__Host-appserver.session=") and "secure" in cookie.lower()
    stale = https.get(cluster.url + "/rest/api/2/myself", cookies={"__Host-appserver.session": "x" * 43}, timeout=10)
    assert stale.status_code == 401
    assert f'login-url="{cluster.url}/rest/auth/1/session"' in stale.headers["WWW-Authenticate"]
    # A client's own X-Forwarded-Proto/Host cannot fool waitress: nginx overwrites them.
    spoofed = https.get(cluster.url + "/rest/api/2/myself", timeout=10,
                        cookies={"__Host-appserver.session": "x" * 43},
                        headers={"X-Forwarded-Host": "evil.example", "X-Forwarded-Proto": "http"})
    assert f'login-url="{cluster.url}/' in spoofed.headers["WWW-Authenticate"]
    too_big = https.post(cluster.url + "/rest/auth/1/session", data=b"x" * (1024 * 1024 + 1),
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert too_big.status_code == 413


# --- one session, every process ----------------------------------------------------------------


def test_a_session_made_on_one_process_is_honoured_by_the_other(cluster, https):
    names = process_names(cluster)
    assert len(names) == 2
    made_on = login(https, cluster).headers[PROCESS]
    assert made_on in names
    answered: Counter[str] = Counter()
    for _ in range(8):
        response = https.get(cluster.url + "/rest/api/2/myself", timeout=10)
        assert response.status_code == 200 and response.json()["name"] == "fred"
        answered[response.headers[PROCESS]] += 1
    assert set(answered) == set(names), answered  # both processes served the one session

    # A form rendered by one process is accepted by the other: one secret, one CSRF key.
    for _ in range(6):
        page = https.get(cluster.url + "/account", timeout=10)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        logout = https.post(cluster.url + "/logout", data={"csrf_token": token}, allow_redirects=False, timeout=10)
        if logout.headers[PROCESS] != page.headers[PROCESS]:
            break
        login(https, cluster)  # the same process again (other traffic): log in, try again
    assert logout.status_code == 303 and logout.headers[PROCESS] != page.headers[PROCESS]
    assert https.get(cluster.url + "/rest/api/2/myself", timeout=10).status_code == 401


# --- the jira client -----------------------------------------------------------------------------


def test_the_jira_client_with_the_ca_bundle_searches_and_logs_in_again(cluster, https, monkeypatch):
    from jira import JIRA

    http = record_http(monkeypatch)
    with pytest.warns(DeprecationWarning, match="Cookie based Authentication"):
        jira = JIRA(cluster.url, auth=("fred", "fred-password"), options={"verify": str(cluster.ca_file)})
    assert len(jira.search_issues("project = DEMO ORDER BY key", maxResults=False)) == 200
    revoke = subprocess.run([str(BIN / "appserver"), str(ROOT / "production.ini"), "revoke-sessions", "fred"],
                            env=cluster.environment(cluster.ports[0]), capture_output=True, text=True, timeout=60)
    assert revoke.returncode == 0, revoke.stderr
    http.clear()
    assert len(jira.search_issues("project = DEMO ORDER BY key", maxResults=False)) == 200
    statuses = [(e.method, e.path.split("?")[0], e.status) for e in http]
    assert statuses[:3] == [("GET", "/rest/api/2/search", 401), ("POST", "/rest/auth/1/session", 200),
                            ("GET", "/rest/api/2/search", 200)], statuses


# --- Chromium over https -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium_home(cluster, tmp_path_factory) -> Path:
    """A HOME whose NSS database (Chromium's certificate store on Linux) trusts the CA."""
    from .e2e.conftest import CHROMIUM

    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"the browser test needs Debian's Chromium at {CHROMIUM} (apt-get install chromium)")
    certutil = shutil.which("certutil")
    if certutil is None:
        pytest.skip("trusting the CA in Chromium needs certutil (apt-get install libnss3-tools)")
    home = tmp_path_factory.mktemp("chromium-home")
    nssdb = home / ".pki" / "nssdb"
    nssdb.mkdir(parents=True)
    subprocess.run([certutil, "-N", "-d", f"sql:{nssdb}", "--empty-password"], check=True, timeout=30)
    subprocess.run([certutil, "-A", "-d", f"sql:{nssdb}", "-n", "appserver cluster CA", "-t", "C,,",
                    "-i", str(cluster.ca_file)], check=True, timeout=30)
    return home


@contextmanagerless := None  # placeholder removed below
