"""The REST answers' ``self`` links are made by ``views.rest.links`` instead of
``request.route_url`` (a search makes hundreds): they must be the very same URLs."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from pyramid.interfaces import IRequestFactory, IRoutesMapper

from appserver.views.rest.links import rest_url, user_url

NAMES = ["fred", "a b", "x/y&z=1+2", "%41?#", "ünï", "日本", "O'Brien", "tab\there"]


def _request(app, **environ):
    factory = app.registry.getUtility(IRequestFactory)
    request = factory.blank("/rest/api/2/search", environ=environ)
    request.registry = app.registry
    return request


@pytest.mark.parametrize("environ", [
    {"HTTP_HOST": "localhost"},
    {"HTTP_HOST": "jira.example.com:8443", "wsgi.url_scheme": "https", "SCRIPT_NAME": "/jira"},
    {"HTTP_HOST": "[::1]:6543", "SCRIPT_NAME": "/a%20b"},
])
def test_the_same_urls_as_route_url(app, environ):
    request = _request(app, **environ)
    for name in NAMES:
        assert user_url(request, SimpleNamespace(username=name)) == request.route_url(
            "rest.user", version="2", _query={"username": name})
        assert rest_url(request, "rest.status", version="latest", id_or_name=name) == request.route_url(
            "rest.status", version="latest", id_or_name=name)
    assert rest_url(request, "rest.issue", version="2", id_or_key="17") == request.route_url(
        "rest.issue", version="2", id_or_key="17")
    assert rest_url(request, "rest.project", version="2", id_or_key="1") == request.route_url(
        "rest.project", version="2", id_or_key="1")


def test_the_application_url_is_this_requests(app):
    """Read once per request, never kept from another request."""
    first = _request(app, HTTP_HOST="one.example")
    second = _request(app, HTTP_HOST="two.example")
    assert rest_url(first, "rest.issue", version="2", id_or_key="1").startswith("http://one.example/")
    assert rest_url(second, "rest.issue", version="2", id_or_key="1").startswith("http://two.example/")


def test_a_route_with_a_pregenerator_goes_through_route_url(app, monkeypatch):
    request = _request(app, HTTP_HOST="localhost")
    route = request.registry.getUtility(IRoutesMapper).get_route("rest.issue")
    monkeypatch.setattr(route, "pregenerator", lambda request, elements, kw: (elements, {**kw, "id_or_key": "99"}))
    assert rest_url(request, "rest.issue", version="2", id_or_key="1").endswith("/rest/api/2/issue/99")


def test_an_unknown_route_is_an_error(app):
    with pytest.raises(KeyError):
        rest_url(_request(app, HTTP_HOST="localhost"), "rest.nothing")
