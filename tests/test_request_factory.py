"""Request extensions built into one request class (appserver/request_factory.py): no class
is created per request, and every extension is still there, for the router's requests and
for requests made elsewhere."""
from __future__ import annotations

from pyramid.request import Request
from pyramid.scripting import prepare
from webob.request import environ_from_url


def served_request(app):
    context = app.request_context(environ_from_url("/rest/api/2/serverInfo"))
    request = context.begin()
    context.end()
    return request


def test_the_router_makes_every_request_of_one_class_that_has_the_extensions(app):
    first, second = served_request(app), served_request(app)
    assert type(first) is type(second)  # Pyramid's own way makes a new class per request
    for name in ("dbsession", "authentication", "user", "passwords", "now", "tm", "session_store"):
        assert name in type(first).__dict__, name


def test_a_request_made_elsewhere_still_gets_the_extensions(app):
    request = Request.blank("/")
    env = prepare(request=request, registry=app.registry)
    try:
        assert request.passwords is app.registry.passwords
        assert request.authentication.identity is None
    finally:
        env["closer"]()


def test_path_info_is_decoded_once_and_follows_the_environ(app):
    request = served_request(app)
    request.environ["PATH_INFO"] = "/caf\xc3\xa9"  # WSGI: the UTF-8 bytes as Latin-1
    assert request.path_info == "/café"
    assert request.path_info is request.path_info  # decoded once
    request.environ["PATH_INFO"] = "/other"  # a tween may rewrite it
    assert request.path_info == "/other"
    request.path_info = "/set"  # WebOb's setter
    assert request.environ["PATH_INFO"] == "/set" and request.path_info == "/set"
    request.environ["PATH_INFO"] = "/\xff"
    try:
        request.path_info
    except UnicodeDecodeError:
        pass
    else:
        raise AssertionError("a path that is not UTF-8 must raise, as WebOb's does")


def test_get_is_kept_on_the_request_and_follows_the_query_string(app):
    request = served_request(app)
    request.environ["QUERY_STRING"] = "os_authType=basic&q=caf%C3%A9"
    assert request.GET.getall("os_authType") == ["basic"] and request.GET["q"] == "café"
    assert request.GET is request.GET  # parsed once
    assert "webob._parsed_query_vars" not in request.environ  # it would keep the environ
    request.GET["q"] = "tea"  # WebOb's GetDict writes changes back to the query string
    assert "q=tea" in request.environ["QUERY_STRING"] and request.GET["q"] == "tea"
    request.environ["QUERY_STRING"] = "other=1"  # a tween may rewrite it
    assert dict(request.GET) == {"other": "1"}
    request.environ["QUERY_STRING"] = "q=%FF"
    try:
        request.GET
    except UnicodeDecodeError:
        pass
    else:
        raise AssertionError("a query string that is not UTF-8 must raise, as WebOb's does")
