"""A steady request leaves no reference cycles behind (issue 11).

An object in a cycle is not freed when the request ends but by the garbage collector, which
then walks every object of the process (an app's worth of modules, routes and mappers): a
request that made cycles paid for a collection every few hundred requests, and the
anonymous serverInfo was 0.72x the bare JSON view partly for that reason. These were
``Root`` keeping the request (request -> root -> request) and reading ``request.GET`` for a
request without a query string (environ -> GET -> environ); then the traceback an exception
view's answer kept (request -> exception -> traceback -> frames -> request), WebOb's parsed
query string (now kept on the request) and the cookiecutter's ``session.info["request"]``
(request -> dbsession -> request). docs/performance.md has the
figures; this test counts what ``gc.collect()`` finds after requests made with the
collector off, through the WSGI app itself (WebTest makes cycles of its own).

The count runs in a process of its own (``python -m tests.test_reference_cycles URL``),
where the measured app is the only code running: the collector sees the whole process, and
in the test process another thread's garbage was counted as the request's. An outage watch
(appserver.health.OutageWatch) of an earlier test's app whose database was gone for good
probed every 5 s for the rest of the run, and a failed probe finishing while the count ran
left its connection and traceback (in two pytest-xdist workers, 4 to 7 of these 22 tests
failed in some runs; patching ``OutageWatch.check`` could not stop a probe in flight).
"""
from __future__ import annotations

import base64
import gc
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable

import pytest
from webob import Request

from .conftest import DATABASES
from .support import ROOT, fresh_database, sibling_database

REQUESTS = 20
#: What the other process prints its results after.
RESULTS = "reference-cycles: "
FRED = ("fred", "fred-password")
FRED_BASIC = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
#: A cookie whose token no session has.
STALE_COOKIE = {"Cookie": "appserver.session=" + "x" * 43}

#: name -> (path, headers, expected status); "fred-cookie" in the headers stands for the
#: Cookie header of a session fred logged in to over REST.
CASES: dict[str, tuple[str, dict[str, str] | str, str]] = {
    "anonymous": ("/rest/api/2/serverInfo", {}, "200"),
    "cookie": ("/rest/api/2/myself", "fred-cookie", "200"),
    "basic": ("/rest/api/2/myself", FRED_BASIC, "200"),
    "stale-cookie": ("/rest/api/2/myself", STALE_COOKIE, "401"),
    "anonymous-protected": ("/rest/api/2/myself", {}, "401"),
    "rest-not-found": ("/rest/api/2/no-such-resource", {}, "404"),
    "page-not-found": ("/no-such-page", {}, "404"),
    "page-refused": ("/account", {}, "303"),
    "method-not-allowed": ("/logout", {}, "405"),
    "rest-query-string": ("/rest/api/2/serverInfo?os_authType=none&expand=all", {}, "200"),
    "page-query-string": ("/login?os_destination=%2Fissues", {}, "200"),
}


def garbage_after(app, make_environ: Callable[[], dict], status: str = "200") -> list[str]:
    """The types of what ``REQUESTS`` requests, each answered ``status``, left for the
    garbage collector."""

    def call() -> None:
        statuses = []
        body = app(make_environ(), lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(body)
        assert statuses and statuses[0].split()[0] == status, statuses

    call()  # warm: first use of the pool, caches, lazy imports
    # Nothing else may run while the collector is off: its garbage would count as ours.
    assert threading.active_count() == 1, [thread.name for thread in threading.enumerate()]
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        for _ in range(REQUESTS):
            call()
        gc.collect()
        found = sorted({f"{type(thing).__module__}.{type(thing).__name__}" for thing in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    return found


def environ_for(path: str, headers: dict[str, str] | None = None) -> Callable[[], dict]:
    def make() -> dict:
        request = Request.blank(path, headers=headers or {})
        request.environ.update({"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"})
        return request.environ

    return make


def measure(database_url: str) -> dict[str, list[str]]:
    """Every case's garbage, on an app of this process over the migrated, empty database at
    ``database_url`` (its data committed for real), made as the test fixtures make theirs."""
    from datetime import datetime, timezone

    import appserver
    from appserver.clock import FrozenClock
    from appserver.models import get_engine

    from .support import CHEAP_PASSWORDS, base_settings, create_user

    settings = base_settings(database_url)
    settings["appserver.dbengine"] = engine = get_engine(settings)
    settings["appserver.clock"] = FrozenClock(datetime.now(timezone.utc).replace(microsecond=0))
    settings["appserver.password_context"] = CHEAP_PASSWORDS
    app = appserver.main({}, **settings)
    from pyramid.scripting import prepare

    env = prepare(registry=app.registry)
    with env["request"].tm:
        create_user(env["request"], *FRED, display_name="Fred Developer")
    env["closer"]()
    login = Request.blank("/rest/auth/1/session", method="POST", content_type="application/json",
                          body=json.dumps({"username": FRED[0], "password": FRED[1]}).encode())
    login.environ.update({"HTTP_HOST": "localhost", "REMOTE_ADDR": "127.0.0.1"})
    answer = login.get_response(app)
    assert answer.status_int == 200, answer.text
    fred_cookie = {"Cookie": f"appserver.session={answer.json['session']['value']}"}
    results = {}
    for name, (path, headers, status) in CASES.items():
        headers = fred_cookie if headers == "fred-cookie" else headers
        results[name] = garbage_after(app, environ_for(path, headers), status)
    engine.dispose()
    return results


@pytest.fixture(scope="module", params=DATABASES)
def garbage(request, tmp_path_factory) -> dict[str, list[str]]:
    """Every case's garbage, counted by a process of its own on a database of its own."""
    if request.param == "postgresql":
        url = sibling_database(os.environ["TEST_DATABASE_URL"], "cycles")
    else:
        url = f"sqlite:///{tmp_path_factory.mktemp('cycles') / 'cycles.sqlite'}"
    run = subprocess.run([sys.executable, "-m", "tests.test_reference_cycles", fresh_database(url)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    line = [line for line in run.stdout.splitlines() if line.startswith(RESULTS)][-1]
    return json.loads(line[len(RESULTS):])


def test_an_anonymous_request_leaves_no_cycles(garbage):
    assert garbage["anonymous"] == []


def test_a_cookie_request_leaves_no_cycles(garbage):
    assert garbage["cookie"] == []


def test_a_basic_request_leaves_no_cycles(garbage):
    assert garbage["basic"] == []


def test_a_stale_cookie_refused_under_rest_leaves_no_cycles(garbage):
    assert garbage["stale-cookie"] == []


def test_an_anonymous_request_for_a_protected_resource_leaves_no_cycles(garbage):
    """Refused through the forbidden view: an exception view, which Pyramid gives the
    exception and its traceback (request.exception, request.exc_info)."""
    assert garbage["anonymous-protected"] == []


def test_a_rest_not_found_leaves_no_cycles(garbage):
    assert garbage["rest-not-found"] == []


def test_a_page_not_found_leaves_no_cycles(garbage):
    assert garbage["page-not-found"] == []


def test_a_page_refused_to_an_anonymous_browser_leaves_no_cycles(garbage):
    """The forbidden view's redirect to the login page."""
    assert garbage["page-refused"] == []


def test_a_method_not_allowed_leaves_no_cycles(garbage):
    """PredicateMismatch, answered by the not-found view as a 405 (logging out is POST only)."""
    assert garbage["method-not-allowed"] == []


def test_a_request_with_a_query_string_leaves_no_cycles(garbage):
    """Read by the os_authType rule on every such request: WebOb keeps the parsed query in
    the environ as a GetDict that keeps the environ (environ -> GetDict -> environ)."""
    assert garbage["rest-query-string"] == []


def test_a_page_with_a_query_string_leaves_no_cycles(garbage):
    assert garbage["page-query-string"] == []


if __name__ == "__main__":
    print(RESULTS + json.dumps(measure(sys.argv[1])))
