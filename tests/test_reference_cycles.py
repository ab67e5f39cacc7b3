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
"""
from __future__ import annotations

import base64
import gc
from collections.abc import Callable
from unittest import mock

import pytest
from webob import Request

from appserver.health import OutageWatch

REQUESTS = 20


def garbage_after(app, make_environ: Callable[[], dict], status: str = "200") -> list[str]:
    """The types of what ``REQUESTS`` requests, each answered ``status``, left for the
    garbage collector."""

    def call() -> None:
        statuses = []
        body = app(make_environ(), lambda status, headers, exc_info=None: statuses.append(status))
        b"".join(body)
        assert statuses and statuses[0].split()[0] == status, statuses

    call()  # warm: first use of the pool, caches, lazy imports
    gc.collect()
    gc.disable()
    # An earlier test's app whose database is gone may still be watched by its outage
    # thread (appserver.health.OutageWatch), whose failed probes leave cycles of their own
    # (a Connection and its traceback): no probe while this counts (make test's workers
    # run the files in another order than one process does).
    quiet = mock.patch.object(OutageWatch, "check", lambda self: False)
    quiet.start()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        for _ in range(REQUESTS):
            call()
        gc.collect()
        found = sorted({f"{type(thing).__module__}.{type(thing).__name__}" for thing in gc.garbage})
    finally:
        quiet.stop()
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


@pytest.fixture
def basic_headers(users) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}


def test_an_anonymous_request_leaves_no_cycles(testapp, app):
    assert garbage_after(app, environ_for("/rest/api/2/serverInfo")) == []


def test_a_cookie_request_leaves_no_cycles(testapp, app, fred_cookie):
    assert garbage_after(app, environ_for("/rest/api/2/myself", fred_cookie)) == []


def test_a_basic_request_leaves_no_cycles(testapp, app, basic_headers):
    assert garbage_after(app, environ_for("/rest/api/2/myself", basic_headers)) == []


def test_a_stale_cookie_refused_under_rest_leaves_no_cycles(testapp, app):
    stale = {"Cookie": "appserver.session=" + "x" * 43}
    assert garbage_after(app, environ_for("/rest/api/2/myself", stale), status="401") == []


def test_an_anonymous_request_for_a_protected_resource_leaves_no_cycles(testapp, app):
    """Refused through the forbidden view: an exception view, which Pyramid gives the
    exception and its traceback (request.exception, request.exc_info)."""
    assert garbage_after(app, environ_for("/rest/api/2/myself"), status="401") == []


def test_a_rest_not_found_leaves_no_cycles(testapp, app):
    assert garbage_after(app, environ_for("/rest/api/2/no-such-resource"), status="404") == []


def test_a_page_not_found_leaves_no_cycles(testapp, app):
    assert garbage_after(app, environ_for("/no-such-page"), status="404") == []


def test_a_page_refused_to_an_anonymous_browser_leaves_no_cycles(testapp, app):
    """The forbidden view's redirect to the login page."""
    assert garbage_after(app, environ_for("/account"), status="303") == []


def test_a_method_not_allowed_leaves_no_cycles(testapp, app):
    """PredicateMismatch, answered by the not-found view as a 405 (logging out is POST only)."""
    assert garbage_after(app, environ_for("/logout"), status="405") == []


def test_a_request_with_a_query_string_leaves_no_cycles(testapp, app):
    """Read by the os_authType rule on every such request: WebOb keeps the parsed query in
    the environ as a GetDict that keeps the environ (environ -> GetDict -> environ)."""
    assert garbage_after(app, environ_for("/rest/api/2/serverInfo?os_authType=none&expand=all")) == []


def test_a_page_with_a_query_string_leaves_no_cycles(testapp, app):
    assert garbage_after(app, environ_for("/login?os_destination=%2Fissues")) == []
