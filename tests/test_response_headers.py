"""The headers the tweens add straight to the header list (issue 11): each once, never over
what a view set itself."""
from __future__ import annotations

from pyramid.response import Response

from appserver.hosts import host_allowed, parse_host_pattern
from appserver.security.perimeter import security_headers
from appserver.security.tweens import _finish


def names(response) -> list[str]:
    return [name.lower() for name, _ in response.headerlist]


def test_an_authenticated_answer_varies_with_the_credentials_once(testapp, fred_cookie):
    response = testapp.get("/rest/api/2/myself", headers=fred_cookie)
    assert response.headers["Vary"] == "Authorization, Cookie"
    assert response.headers["Cache-Control"] == "no-store"
    for name in ("vary", "cache-control", "x-ausername", "x-seraph-loginreason", "content-security-policy"):
        assert names(response).count(name) == 1, name


def test_an_anonymous_answer_varies_with_the_credentials_too(testapp, users):
    """The 5 public issues must not be cached for the user who would see 200 (a shared cache
    keyed on the URL alone); a public answer may still be cached, for anonymous clients."""
    for path in ("/issues", "/rest/api/2/search?maxResults=0", "/rest/api/2/serverInfo", "/"):
        response = testapp.get(path)
        assert response.headers["Vary"] == "Authorization, Cookie", path
        assert "Cache-Control" not in response.headers, path
        for name in ("vary", "x-ausername"):
            assert names(response).count(name) == 1, (path, name)


def test_refusals_before_authentication_name_the_user_too(testapp, users):
    """Every response names its user (docs/rest-api.md): an unreadable request and a refused
    Host are answered before anyone is authenticated, as anonymous."""
    answers = [
        testapp.get("/rest/api/2/myself?q=%FF", status=400),
        testapp.post("/login", b"os_username=%FF", content_type="application/x-www-form-urlencoded", status=400),
        testapp.get("/", headers={"Host": "evil.example"}, status=400),
    ]
    for response in answers:
        assert response.headers.getall("X-AUSERNAME") == ["anonymous"], response.status


def test_a_vary_the_view_set_is_kept_and_merged(app_request, users):
    from appserver.security.identity import Authentication, Identity, Source
    from appserver.security.policy import AUTHENTICATION_KEY

    app_request.__dict__[AUTHENTICATION_KEY] = Authentication(identity=Identity(users["fred"], Source.BASIC))
    response = Response()
    response.headers.update({"Vary": "Accept", "Cache-Control": "private"})
    _finish(app_request, response)
    assert response.headers["Vary"] == "Accept, Authorization, Cookie"
    assert response.headers.getall("Cache-Control") == ["private"]
    assert response.headers["X-AUSERNAME"] == "fred"


def test_security_headers_never_replace_a_views_own(app_request):
    response = Response(content_type="text/html")
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    security_headers(app_request, response, https=True)
    assert response.headers.getall("X-Frame-Options") == ["SAMEORIGIN"]
    assert response.headers["Content-Security-Policy"].startswith("default-src 'self'")
    assert response.headers["Strict-Transport-Security"]
    security_headers(app_request, response, https=True)  # a second pass adds nothing
    assert len(names(response)) == len(set(names(response)))

    json = Response(content_type="application/json", charset="utf-8")
    security_headers(app_request, json, https=False)
    assert json.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "Strict-Transport-Security" not in json.headers


def test_the_host_check_answers_the_same_from_its_cache():
    patterns = (parse_host_pattern("example.com"), parse_host_pattern(".example.org"))
    for _ in range(2):  # the second time from the cache
        assert host_allowed("example.com:8080", patterns)
        assert host_allowed("www.example.org", patterns)
        assert not host_allowed("evil.example", patterns)
        assert not host_allowed("example.com@evil", patterns)
    assert not host_allowed("example.com", (parse_host_pattern("other.example"),))


def test_every_json_answer_has_jiras_exact_content_type(testapp, users, fred_cookie):
    """``application/json;charset=UTF-8``, byte for byte, as Jira sends it: atlassian-python-api
    compares the header as a string before it reads a 401's errorMessages."""
    from appserver.rendering import JSON_CONTENT_TYPE

    admin = {"Authorization": "Basic YWRtaW46YWRtaW4tcGFzc3dvcmQ="}  # admin:admin-password
    answers = [
        testapp.get("/rest/api/2/serverInfo"),  # a view's renderer
        testapp.get("/rest/api/2/myself", headers=fred_cookie),
        testapp.get("/rest/api/2/myself", status=401),  # an error view
        testapp.get("/rest/api/2/myself", headers={"Cookie": "appserver.session=" + "x" * 43}, status=401),
        testapp.get("/rest/api/2/nothing-here", status=404),
        testapp.get("/rest/api/2/search?maxResults=x", status=400),
        testapp.post("/rest/api/2/search", "x", content_type="text/plain", headers=admin, status=415),
        testapp.get("/status"),  # the health tween
        testapp.get("/rest/api/2/myself?os_authType=basic", status=401),  # the seed's tween
    ]
    for response in answers:
        assert response.headers["Content-Type"] == JSON_CONTENT_TYPE, (response.request.path_qs, response.status)
        response.json  # and the body is JSON in that charset


def test_the_errors_waitress_answers_itself_name_the_user_too():
    """Every response names its user, those made before the application runs included."""
    from types import SimpleNamespace

    from waitress.utilities import BadRequest, RequestEntityTooLarge

    from appserver.server_errors import render

    adj = SimpleNamespace(max_request_body_size=1024, max_request_header_size=1024)
    for error in (RequestEntityTooLarge("too large"), BadRequest("bad")):
        for path in ("/rest/api/2/search", "/issues"):
            headers, _ = render(error, path, adj, "/rest")
            assert ("X-AUSERNAME", "anonymous") in headers
