"""Hostile input, proven (issue 5; session-security.md items 11, 14, 16; issue 10: Host
headers, ids, non-Latin-1 usernames, long JQL).

Malformed ``Authorization`` headers, garbage and oversized cookies, bytes that are not UTF-8
in paths, query strings and bodies, odd and huge JSON, SQL-looking and oversized usernames,
a 1 MB password and unknown ``os_authType`` values are thrown at every endpoint. Every
answer must be below 500, say clearly what is wrong in the right format (Jira's JSON shape
under ``/rest``, an HTML page elsewhere), show no traceback, and leave the accounts,
sessions and remember-me tokens as they were.

Requests are built as raw WSGI environs (``send``) so that bytes no well-behaved client
would send reach the application unchanged; WebTest's lint still checks every response.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, unquote, urlencode

import pytest
import webob
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from webtest import lint

from appserver.models import RememberToken, User, UserSession

from .support import confirm_websudo, create_user

REST = "/rest"
LOGIN = "/rest/auth/1/session"
MYSELF = "/rest/api/2/myself"
SERVER_INFO = "/rest/api/2/serverInfo"
SESSION_COOKIE = "appserver.session"
REMEMBER_COOKIE = "appserver.remember"
ALLOWED_AUTHTYPES = "none, basic, cookie, any"
TRACEBACK_MARKERS = (
    "Traceback (most recent call last)",
    'File "/',
    '.py", line ',
    "sqlalchemy.",
    "psycopg.",
)

FUZZ = settings(
    deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


# --- sending anything, and judging the answer --------------------------------------------


#: The REST answer of a resource that needs WebSudo (appserver.security.websudo).
WEBSUDO_REQUIRED = "This resource requires WebSudo."


def to_wsgi(value: bytes | str) -> str:
    """WSGI carries request bytes as Latin-1 strings."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


def send(
    app,
    method: str,
    path: bytes | str,
    *,
    query: bytes | str = b"",
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> webob.Response:
    """One request exactly as given (no client-side encoding or cookie jar)."""
    environ = webob.Request.blank("/").environ
    environ.update(
        {
            "REQUEST_METHOD": method,
            "PATH_INFO": to_wsgi(path),
            "QUERY_STRING": to_wsgi(query),
            "HTTP_HOST": "localhost",
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.input": io.BytesIO(body),
            "CONTENT_LENGTH": str(len(body)),
        }
    )
    if content_type is not None:
        environ["CONTENT_TYPE"] = content_type
    for name, value in headers:
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    status, headerlist, app_iter = webob.Request(environ).call_application(lint.middleware(app))
    try:
        body = b"".join(app_iter)
    finally:
        getattr(app_iter, "close", lambda: None)()
    return webob.Response(status=status, headerlist=headerlist, body=body)


def is_rest(path: bytes | str) -> bool:
    path = to_wsgi(path)
    return path == REST or path.startswith(REST + "/")


def assert_clear_answer(response: webob.Response, path: bytes | str, method: str = "GET") -> None:
    """Below 500, no traceback, and an error says what is wrong in the right format."""
    body = response.body.decode("utf-8", "replace")
    assert response.status_code < 500, f"{method} {path!r}: {response.status}\n{body[:2000]}"
    for marker in TRACEBACK_MARKERS:
        assert marker not in body, f"{method} {path!r} leaks {marker!r}:\n{body[:2000]}"
    if response.status_code == 401:
        assert response.headers.get("WWW-Authenticate"), "a 401 must carry a challenge"
    if 300 <= response.status_code < 400:
        location = response.headers["Location"]
        assert location.startswith("http://localhost/"), f"redirect off-site: {location}"
    if response.status_code < 400 or method == "HEAD":
        return
    if is_rest(path):
        assert response.content_type == "application/json", body[:500]
        payload = json.loads(body)
        expected = {"errorMessages", "errors"}
        if response.status_code == 401 and payload.get("message") == WEBSUDO_REQUIRED:
            # WebSudo's 401 carries Jira's own two keys beside ours (docs/rest-api.md). The
            # administrator's fuzz meets it once an earlier example dropped the elevation
            # (POST /websudo/drop): the examples share one session.
            expected |= {"message", "status-code"}
        assert set(payload) == expected, payload
        assert payload["errorMessages"] and all(
            isinstance(m, str) and m.strip() for m in payload["errorMessages"]
        ), payload
        assert isinstance(payload["errors"], dict), payload
        assert all(isinstance(k, str) and isinstance(v, str) for k, v in payload["errors"].items())
    else:
        assert response.content_type == "text/html", body[:500]
        assert 'class="error-message"' in body or 'role="alert"' in body, body[-1500:]


def messages(response: webob.Response) -> str:
    """The human-readable error text, whatever the format."""
    if response.content_type == "application/json":
        payload = response.json
        return " ".join(payload["errorMessages"]) + " " + " ".join(payload["errors"].values())
    return response.body.decode("utf-8", "replace")


def basic(username: str | bytes, password: str | bytes, scheme: str = "Basic") -> tuple[str, str]:
    raw = (
        (username if isinstance(username, bytes) else username.encode())
        + b":"
        + (password if isinstance(password, bytes) else password.encode())
    )
    return ("Authorization", f"{scheme} {base64.b64encode(raw).decode('ascii')}")


def json_body(**values: Any) -> bytes:
    return json.dumps(values).encode()


# --- the state that must not change ------------------------------------------------------


def snapshot(connection) -> tuple:
    """Accounts (minus failure counters, which failed logins legitimately move), sessions
    and remember-me tokens."""
    accounts = connection.execute(
        select(User.id, User.username, User.password_hash, User.active, User.admin).order_by(
            User.id
        )
    ).all()
    sessions = connection.execute(
        select(UserSession.id, UserSession.revoked_at, UserSession.expires_at).order_by(
            UserSession.id
        )
    ).all()
    remembered = connection.execute(
        select(RememberToken.id, RememberToken.token_hash, RememberToken.revoked_at).order_by(
            RememberToken.id
        )
    ).all()
    return accounts, sessions, remembered


@pytest.fixture
def unchanged(connection) -> Iterator[None]:
    """Fails the test if accounts, sessions or remember-me tokens changed."""
    before = snapshot(connection)
    yield
    assert snapshot(connection) == before


@pytest.fixture(autouse=True)
def no_server_errors(caplog) -> Iterator[None]:
    """The catch-all exception view logs every 500: none may be logged."""
    caplog.set_level(logging.ERROR)
    yield
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors


@pytest.fixture
def wsgi(testapp):
    """The WSGI app, bound to this test's transaction."""
    return testapp.app


@pytest.fixture(params=["production", "development"])
def served(request, wsgi, make_app):
    """The app as production serves it, and as ``make run`` does: with the debug toolbar,
    whose tween reads the path, the query and the form before the app's own tweens could."""
    if request.param == "production":
        return wsgi
    return make_app(**{"pyramid.includes": "pyramid_debugtoolbar", "debugtoolbar.hosts": "127.0.0.1"}).app


@pytest.fixture
def accounts(users, app_request) -> dict[str, Any]:
    """The standard users plus two with passwords that clients mangle."""
    made = dict(users)
    made["colon"] = create_user(app_request, "colon", "pa:ss:word:colons")
    made["umlaut"] = create_user(app_request, "umlaut", "pässwörd-grün")
    app_request.dbsession.flush()
    return made


@pytest.fixture
def fred_cookie(wsgi, users) -> tuple[str, str]:
    response = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username="fred", password="fred-password"),
        content_type="application/json",
    )
    assert response.status_code == 200
    return ("Cookie", f"{SESSION_COOKIE}={response.json['session']['value']}")


# --- every endpoint ----------------------------------------------------------------------

_PLACEHOLDER = re.compile(r"\{(\w+)(?::([^{}]*))?\}")


def _sample(regex: str | None) -> str:
    """A value the placeholder's regex accepts: the first literal alternative, else ``1``."""
    first = (regex or "").split("|")[0]
    return first if re.fullmatch(r"[A-Za-z0-9._-]+", first) else "1"


def endpoints(app) -> list[str]:
    """One concrete path per route of the application, placeholders filled in."""
    paths = []
    for route in app.routes_mapper.get_routes(include_static=True):
        pattern = "/" + route.pattern.lstrip("/")
        path = _PLACEHOLDER.sub(lambda m: _sample(m.group(2)), pattern)
        path = re.sub(r"\*\w+$", "style.css", path)
        assert route.match(path) is not None, (route.name, path)
        paths.append(path)
    return paths


def test_endpoints_cover_every_route(wsgi):
    paths = endpoints(wsgi)
    for expected in (
        "/",
        "/login",
        "/logout",
        "/account",
        "/admin/users",
        "/admin/users/1/activate",
        LOGIN,
        MYSELF,
        SERVER_INFO,
        "/static/style.css",
    ):
        assert expected in paths
    assert len(paths) == len(wsgi.routes_mapper.get_routes(include_static=True))


# --- Authorization headers (item 16) -----------------------------------------------------

MALFORMED_AUTHORIZATION = {
    "scheme only": "Basic",
    "scheme and a space": "Basic ",
    "not base64": "Basic !!!",
    "empty username and password": "Basic Og==",
    "base64 without a colon": "Basic " + base64.b64encode(b"fredfred-password").decode(),
    "raw latin-1 text": "Basic fr\xe9d:p\xe4ss",
    "latin-1 bytes of an unknown user": basic("fr\xe9d".encode("latin-1"), b"p\xe4ss")[1],
    "Digest": 'Digest username="fred", realm="appserver"',
    "empty header": "",
    "spaces": "   ",
    "NUL in the username": basic(b"fr\x00ed", b"fred-password")[1],
    "two schemes": basic("fred", "fred-password")[1] + ", Bearer x",
    "junk after the credentials": basic("fred", "fred-password")[1] + "@",
    "wrong password": basic("fred", "wrong")[1],
    "lower-case basic, wrong password": basic("fred", "wrong", scheme="basic")[1],
    "username only": basic("fred", "")[1],
}


@pytest.mark.parametrize(
    "header", MALFORMED_AUTHORIZATION.values(), ids=MALFORMED_AUTHORIZATION.keys()
)
def test_malformed_authorization_is_a_401_with_a_basic_challenge(wsgi, users, unchanged, header):
    for path in (MYSELF, SERVER_INFO, "/"):  # a fourth failure of one name would be a lock-out
        response = send(wsgi, "GET", path, headers=[("Authorization", header)])
        assert_clear_answer(response, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="appserver"')
        assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
        assert response.headers["X-AUSERNAME"] == "anonymous"
        scheme = header.strip().partition(" ")[0].lower()
        if scheme in ("basic", "bearer"):
            assert "Basic authentication failed" in messages(response)
        else:  # Digest, Negotiate, nothing: not a failed Basic login
            assert "is not accepted here: send Basic" in messages(response)


def test_a_scheme_this_server_does_not_take_is_named_not_taken_for_a_wrong_password(testapp, users):
    for header in ('Digest username="fred"', "Negotiate YII=", "NTLM TlRMTVNTUAAB"):
        response = testapp.get("/rest/api/2/myself", headers={"Authorization": header}, status=401)
        scheme = header.split()[0]
        assert response.json["errorMessages"] == [
            f"The Authorization scheme {scheme!r} is not accepted here: send Basic (a username and "
            "password) or Bearer (a personal access token)."
        ]


MALFORMED_BEARER = {
    "scheme only": "Bearer",
    "scheme and a space": "Bearer ",
    "not a token": "Bearer x",
    "lower-case scheme, garbage": "bearer !!!",
    "id too large": "Bearer apt_99999999999_" + "A" * 43,
    "id zero": "Bearer apt_0_" + "A" * 43,
    "negative id": "Bearer apt_-1_" + "A" * 43,
    "non-ASCII digits": "Bearer apt_\u0661_" + "A" * 43,
    "NUL in the token": "Bearer apt_1_" + "A" * 42 + "\x00",
    "secret too short": "Bearer apt_1_" + "A" * 42,
    "two tokens": "Bearer apt_1_" + "A" * 43 + " apt_2_" + "A" * 43,
    "10,000 characters": "Bearer " + "A" * 10_000,
    "unknown token": "Bearer apt_1_" + "A" * 43,
}


@pytest.mark.parametrize("header", MALFORMED_BEARER.values(), ids=MALFORMED_BEARER.keys())
def test_malformed_bearer_is_a_401_with_a_bearer_challenge(wsgi, users, unchanged, header):
    for path in (MYSELF, SERVER_INFO, "/"):
        response = send(wsgi, "GET", path, headers=[("Authorization", header)])
        assert_clear_answer(response, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Bearer realm="appserver", error="invalid_token"')
        assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
        assert response.headers["X-AUSERNAME"] == "anonymous"
        assert "Set-Cookie" not in response.headers


def test_no_header_with_os_authtype_basic_is_a_401_with_a_challenge(wsgi, users, unchanged):
    for path in (MYSELF, SERVER_INFO, "/"):
        response = send(wsgi, "GET", path, query="os_authType=basic")
        assert_clear_answer(response, path)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith('Basic realm="appserver"')
        assert "os_authType=basic" in messages(response)


@pytest.mark.parametrize(
    "username, password, header",
    [
        ("fred", "fred-password", basic("fred", "fred-password", scheme="basic")),  # RFC 7235
        ("fred", "fred-password", basic("fred", "fred-password", scheme="BASIC")),
        ("colon", "pa:ss:word:colons", basic("colon", "pa:ss:word:colons")),  # split at the first colon only
        ("umlaut", "pässwörd-grün", basic("umlaut", "pässwörd-grün")),  # UTF-8 (RFC 7617 charset="UTF-8")
        ("umlaut", "pässwörd-grün", basic(b"umlaut", "pässwörd-grün".encode("latin-1"))),  # legacy clients
    ],
    ids=[
        "lower-case basic",
        "upper-case BASIC",
        "password with colons",
        "UTF-8 password",
        "latin-1 password",
    ],
)
def test_unusual_but_valid_basic_credentials_succeed(wsgi, accounts, username, password, header):
    response = send(wsgi, "GET", MYSELF, headers=[header])
    assert response.status_code == 200, response.body
    assert response.json["name"] == username
    assert response.headers["X-Seraph-LoginReason"] == "OK"


def test_utf8_password_works_through_every_login_channel(wsgi, accounts, testapp):
    rest = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username="umlaut", password="pässwörd-grün"),
        content_type="application/json",
    )
    assert rest.status_code == 200
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "umlaut", "pässwörd-grün"
    assert form.submit().status_code == 303


@FUZZ
@given(header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=120))
def test_any_authorization_text_is_refused_cleanly(wsgi, users, header):
    response = send(wsgi, "GET", MYSELF, headers=[("Authorization", header)])
    assert_clear_answer(response, MYSELF)
    assert response.status_code in (401, 403)


@FUZZ
@given(credentials=st.binary(max_size=120), scheme=st.sampled_from(["Basic", "basic", "Bearer"]))
def test_any_decoded_credentials_are_refused_cleanly(wsgi, users, credentials, scheme):
    header = f"{scheme} {base64.b64encode(credentials).decode()}"
    response = send(wsgi, "GET", "/", headers=[("Authorization", header)])
    assert_clear_answer(response, "/")
    assert response.status_code in (401, 403)
    assert response.headers["X-AUSERNAME"] == "anonymous"


# --- cookies (item 11) -------------------------------------------------------------------

GARBAGE_COOKIE_VALUES = {
    "non-ASCII bytes, quoted": '"\xff\xfe\xfd"',
    "octal escapes of non-UTF-8 bytes": "\\377\\376",
    "octal escape of NUL": '"\\000"',
    "UTF-8 multibyte": '"\xe2\x82\xac"',
    "SQL": "' OR '1'='1",
    "SQL statement": "x';DROP TABLE sessions;--",
    "10 KB token": "a" * 10_240,
    "token-shaped but never issued": "A" * 43,
    "remember-me shaped but never issued": "A" * 43 + "." + "B" * 43,
    "empty": "",
    "quoted empty": '""',
    "dots": "...",
}


@pytest.mark.parametrize("value", GARBAGE_COOKIE_VALUES.values(), ids=GARBAGE_COOKIE_VALUES.keys())
def test_garbage_cookies_never_fail_and_write_nothing(wsgi, users, unchanged, value):
    for name in (SESSION_COOKIE, REMEMBER_COOKIE):
        check_garbage_cookie(wsgi, name, value)


def check_garbage_cookie(wsgi, name: str, value: str) -> None:
    cookie = ("Cookie", f"{name}={value}; unrelated=\\377")
    home = send(wsgi, "GET", "/", headers=[cookie])
    assert_clear_answer(home, "/")
    assert home.status_code == 200 and home.headers["X-AUSERNAME"] == "anonymous"
    # The garbage cookie is deleted, with a deletion cookie for exactly that name.
    assert any(
        h.startswith(f"{name}=;") and "Max-Age=0" in h for h in home.headers.getall("Set-Cookie")
    )
    assert_clear_answer(send(wsgi, "GET", "/login", headers=[cookie]), "/login")
    myself = send(wsgi, "GET", MYSELF, headers=[cookie])
    assert_clear_answer(myself, MYSELF)
    assert myself.status_code == 401
    info = send(wsgi, "GET", SERVER_INFO, headers=[cookie])
    assert_clear_answer(info, SERVER_INFO)
    # Rule 1: a login cookie (session or remember-me) that logs no one in is a 401 under /rest.
    assert info.status_code == 401


@pytest.mark.parametrize("value", GARBAGE_COOKIE_VALUES.values(), ids=GARBAGE_COOKIE_VALUES.keys())
def test_login_works_whatever_garbage_cookie_the_client_still_holds(wsgi, users, value):
    cookie = ("Cookie", f"{SESSION_COOKIE}={value}; {REMEMBER_COOKIE}={value}")
    response = send(
        wsgi,
        "POST",
        LOGIN,
        headers=[cookie],
        body=json_body(username="fred", password="fred-password"),
        content_type="application/json",
    )
    assert response.status_code == 200
    assert response.json["session"]["name"] == SESSION_COOKIE


def test_many_cookies_and_a_huge_cookie_header(wsgi, users, fred_cookie, unchanged):
    many = "; ".join(f"c{i}=v{i}" for i in range(500))
    response = send(
        wsgi, "GET", MYSELF, headers=[("Cookie", f"{many}; {fred_cookie[1]}; big={'x' * 100_000}")]
    )
    assert response.status_code == 200 and response.json["name"] == "fred"
    response = send(wsgi, "GET", "/", headers=[("Cookie", many)])
    assert_clear_answer(response, "/")
    assert response.status_code == 200


def test_a_live_session_survives_garbage_in_other_cookies(wsgi, users, fred_cookie):
    response = send(
        wsgi, "GET", MYSELF, headers=[("Cookie", f'a="\xff"; b=\\377; {fred_cookie[1]}; c=\xe9')]
    )
    assert response.status_code == 200 and response.json["name"] == "fred"


@FUZZ
@given(
    value=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters=";"), max_size=200
    ),
    name=st.sampled_from([SESSION_COOKIE, REMEMBER_COOKIE, "csrf", "other"]),
    path=st.sampled_from(["/", "/login", MYSELF, SERVER_INFO, "/account"]),
)
def test_any_cookie_value_is_answered_cleanly(wsgi, users, connection, value, name, path):
    before = snapshot(connection)
    response = send(wsgi, "GET", path, headers=[("Cookie", f"{name}={value}")])
    assert_clear_answer(response, path)
    assert snapshot(connection) == before


@FUZZ
@given(header=st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=300))
def test_any_cookie_header_is_answered_cleanly(wsgi, users, header):
    for path in ("/", MYSELF):
        assert_clear_answer(send(wsgi, "GET", path, headers=[("Cookie", header)]), path)


# --- bytes that are not UTF-8 ------------------------------------------------------------

BAD_PATHS = [
    b"/\xff",
    b"/login\xfe",
    b"/rest/api/2/\xff",
    b"/rest/auth/1/session\xc3",
    b"/rest/\xc3\x28",
    b"/static/\xff",
    b"/admin/users/\xe9",
]


def test_non_utf8_paths_are_a_400(served, users, fred_cookie, unchanged):
    for path in BAD_PATHS:
        for method in ("GET", "POST"):
            response = send(served, method, path, headers=[fred_cookie])
            assert_clear_answer(response, path, method)
            assert response.status_code == 400
            assert "not valid UTF-8" in messages(response)


BAD_QUERIES = [
    b"x=%ff",
    b"os_authType=%ff",
    b"os_destination=%ff%fe",
    b"%ff=1",
    b"jql=%c3%28",
    b"x=\xff",
]


@pytest.mark.parametrize("query", BAD_QUERIES, ids=[q.decode("latin-1") for q in BAD_QUERIES])
def test_non_utf8_query_strings_are_a_400_at_every_endpoint(wsgi, served, users, unchanged, query):
    for path in endpoints(wsgi):
        for method in ("GET", "POST"):
            response = send(served, method, path, query=query)
            assert_clear_answer(response, path, method)
            assert response.status_code == 400, (method, path, response.status)
            assert "query string" in messages(response)


def login_form_token(testapp) -> tuple[str, str]:
    """The anonymous CSRF token and the cookie that carries it (login CSRF protection)."""
    page = testapp.get("/login")
    token = page.forms["login-form"]["csrf_token"].value
    return token, f"csrf={testapp.cookies['csrf']}"


def test_non_utf8_form_values_are_a_400(wsgi, testapp, users, unchanged):
    """WebOb's parser reads bytes that are not UTF-8 as U+FFFD: a token's name or a display
    name was stored changed, silently. The same bytes in a URL are a 400; in a form too."""
    token, cookie = login_form_token(testapp)
    for body in (f"csrf_token={token}&os_username=%ff%fe&os_password=%c3%28".encode(),
                 f"csrf_token={token}&os_username=fred&os_password=\xff".encode("latin-1"),
                 f"csrf_token={token}&os_username=%ED%A0%80&os_password=x".encode()):  # a surrogate
        response = send(wsgi, "POST", "/login", headers=[("Cookie", cookie)], body=body,
                        content_type="application/x-www-form-urlencoded")
        assert_clear_answer(response, "/login", "POST")
        assert response.status_code == 400
        assert "not valid UTF-8" in messages(response)


def multipart(parts: list[tuple[bytes, bytes]], filename: bytes | None = None) -> bytes:
    """A multipart body; with ``filename``, every part is a file part."""
    disposition = b'; filename="' + filename + b'"' if filename is not None else b""
    return b"".join(
        b'--XX\r\nContent-Disposition: form-data; name="' + name + b'"' + disposition + b"\r\n\r\n"
        + value + b"\r\n"
        for name, value in parts
    ) + b"--XX--\r\n"


def test_non_utf8_multipart_form_is_a_400(wsgi, testapp, users, unchanged):
    token, cookie = login_form_token(testapp)
    body = multipart([(b"csrf_token", token.encode()), (b"os_username", b"\xff\xfe"),
                      (b"os_password", b"\xc3("), (b"\xff", b"\xff")])
    response = send(wsgi, "POST", "/login", headers=[("Cookie", cookie)], body=body,
                    content_type="multipart/form-data; boundary=XX")
    assert_clear_answer(response, "/login", "POST")
    assert response.status_code == 400
    assert "not valid UTF-8" in messages(response)


def test_a_utf8_multipart_form_is_read(wsgi, testapp, users):
    token, cookie = login_form_token(testapp)
    body = multipart([(b"csrf_token", token.encode()), (b"os_username", b"fred"),
                      (b"os_password", b"fred-password")])
    response = send(wsgi, "POST", "/login", headers=[("Cookie", cookie)], body=body,
                    content_type="multipart/form-data; boundary=XX")
    assert response.status_code == 303


FILE_FORMS = {  # path: the fields its form sends
    "/login": [b"csrf_token", b"os_username", b"os_password"],
    "/logout": [b"csrf_token"],
    "/account/password": [b"csrf_token", b"current_password", b"new_password", b"confirm_password"],
    "/account/tokens": [b"csrf_token", b"name", b"expiration_days"],
    "/account/sessions/revoke-others": [b"csrf_token"],
    "/websudo": [b"csrf_token", b"websudo_password"],
    "/admin/users": [b"csrf_token", b"username", b"password", b"display_name"],
}


@pytest.mark.parametrize("path", FILE_FORMS)
def test_a_file_in_a_form_is_a_400_naming_the_field(wsgi, admin_session, unchanged, path):
    """Any field sent as a file part (``curl -F field=@file``) reached the views as an
    object where a string was expected: a 500 on every form, the login page included."""
    for field in FILE_FORMS[path]:
        parts = [(name, b"x") for name in FILE_FORMS[path] if name != field]
        body = multipart(parts) [:-len(b"--XX--\r\n")] + multipart([(field, b"text")], filename=b"f.txt")
        response = send(wsgi, "POST", path, headers=admin_session, body=body,
                        content_type="multipart/form-data; boundary=XX")
        assert_clear_answer(response, path, "POST")
        assert response.status_code == 400, (path, field, response.status)
        assert f"“{field.decode()}” is a file" in messages(response)


def test_media_types_are_read_in_any_case(wsgi, testapp, users):
    """RFC 9110: a media type is case-insensitive. ``APPLICATION/JSON`` was a 415, and a
    form in capitals was read as no form at all (the expired-form page)."""
    response = send(wsgi, "POST", LOGIN, body=json_body(username="fred", password="fred-password"),
                    content_type="APPLICATION/JSON; Charset=UTF-8")
    assert response.status_code == 200 and response.json["session"]["value"]
    token, cookie = login_form_token(testapp)
    response = send(wsgi, "POST", "/login", headers=[("Cookie", cookie)],
                    body=f"csrf_token={token}&os_username=fred&os_password=fred-password".encode(),
                    content_type="Application/X-WWW-Form-Urlencoded")
    assert response.status_code == 303


@pytest.mark.parametrize("charset", ["latin-1", "utf-16", "bogus"])
def test_forms_in_another_charset_are_a_415(served, users, fred_cookie, unchanged, charset):
    for path in ("/login", "/logout", "/account/password", LOGIN):
        for content_type in (
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=XX",
        ):
            response = send(
                served,
                "POST",
                path,
                headers=[fred_cookie],
                body=b"os_username=fr%e9d&csrf_token=x",
                content_type=f"{content_type}; charset={charset}",
            )
            assert_clear_answer(response, path, "POST")
            assert response.status_code == 415
            assert "UTF-8" in messages(response)


BROKEN_MULTIPART = {
    "no boundary": ("multipart/form-data", b"x"),
    "an empty boundary": ("multipart/form-data; boundary=", b"x"),
    "a boundary too long": ("multipart/form-data; boundary=" + "b" * 300, b"x"),
}


@pytest.mark.parametrize("content_type, body", BROKEN_MULTIPART.values(), ids=BROKEN_MULTIPART)
def test_a_multipart_form_that_cannot_be_parsed_is_a_400(served, users, fred_cookie, unchanged, content_type, body):
    for path in ("/login", "/logout", "/account/password", "/admin/users", LOGIN, "/rest/api/2/search"):
        response = send(served, "POST", path, headers=[fred_cookie], body=body, content_type=content_type)
        assert_clear_answer(response, path, "POST")
        assert response.status_code == 400, (path, response.status)
        assert "form data could not be read" in messages(response)


@FUZZ
@given(path=st.binary(max_size=40), query=st.binary(max_size=40))
def test_any_path_and_query_bytes_are_answered_cleanly(wsgi, users, path, query):
    for prefix in (b"/", b"/rest/api/2/"):
        # CR, LF and '?' cannot appear in a request line's path; '#' never reaches a server.
        raw = prefix + bytes(b for b in path if b not in b"\r\n?#")
        assert_clear_answer(send(wsgi, "GET", raw, query=query.replace(b"#", b"")), raw)


# --- odd and huge JSON -------------------------------------------------------------------

ODD_JSON = {
    "empty body": b"",
    "not JSON": b"{",
    "array": b"[]",
    "array of credentials": b'["fred", "fred-password"]',
    "string": b'"fred"',
    "number": b"1",
    "huge integer": b"1" * 5_000,
    "infinity": b"1e999",
    "NaN": b"NaN",
    "null": b"null",
    "true": b"true",
    "empty object": b"{}",
    "numbers for strings": b'{"username": 1, "password": 2}',
    "nulls": b'{"username": null, "password": null}',
    "booleans": b'{"username": true, "password": false}',
    "containers": b'{"username": ["fred"], "password": {"p": "fred-password"}}',
    "password as list": b'{"username": "fred", "password": ["fred-password"]}',
    "empty strings": b'{"username": "", "password": ""}',
    "username only": b'{"username": "fred"}',
    "duplicate keys": b'{"username": "fred", "password": "fred-password", "password": "x"}',
    "nested 100k arrays": b"[" * 100_000 + b"]" * 100_000,
    "nested 100k objects, unterminated": b'{"a":' * 100_000,
    "byte order mark": b'\xef\xbb\xbf{"username": "fred", "password": "x"}',
    "not UTF-8": b'{"username": "\xff", "password": "\xfe"}',
    "lone surrogate": b'{"username": "\\ud800", "password": "x"}',
    "escaped NUL": b'{"username": "fred\\u0000", "password": "x"}',
    "2 MB": b'{"username": "fred", "password": "' + b"x" * 2_000_000 + b'"}',
}


@pytest.mark.parametrize("body", ODD_JSON.values(), ids=ODD_JSON.keys())
def test_odd_json_at_the_session_resource_is_refused_cleanly(wsgi, users, unchanged, body):
    response = send(wsgi, "POST", LOGIN, body=body, content_type="application/json")
    assert_clear_answer(response, LOGIN, "POST")
    assert response.status_code in (400, 401, 413)
    if response.status_code == 401:
        assert response.json["errorMessages"] == ["Login failed"]


@pytest.mark.parametrize(
    "content_type",
    [
        None,
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/xml",
        "Application/JSON; charset=bogus",
        "application/json; charset=utf-16",
    ],
)
def test_other_body_types_at_the_session_resource_are_refused_cleanly(
    wsgi, users, unchanged, content_type
):
    response = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username="fred", password="wrong"),
        content_type=content_type,
    )
    assert_clear_answer(response, LOGIN, "POST")
    assert response.status_code in (400, 401, 415)


def test_odd_json_at_every_rest_endpoint(wsgi, users, fred_cookie, unchanged):
    """Whatever the resource (and whether it takes POST at all), odd bodies get clean answers,
    from anonymous and from logged-in clients."""
    paths = [p for p in endpoints(wsgi) if is_rest(p) and p != LOGIN]
    bodies = list(ODD_JSON.values()) + [
        b'{"jql": 1, "startAt": "x", "maxResults": 1e999, "fields": {"a": 1}, "expand": [null]}',
        b'{"jql": "\\u0000 = \'\\ud7ff\'", "startAt": -1, "maxResults": 99999999999999999999999}',
    ]
    for path in paths:
        for body in bodies:
            for headers in ([], [fred_cookie]):
                response = send(
                    wsgi, "POST", path, headers=headers, body=body, content_type="application/json"
                )
                assert_clear_answer(response, path, "POST")


# --- SQL-looking, NUL and oversized usernames (item 11) ----------------------------------

HOSTILE_USERNAMES = {
    "SQL tautology": "' OR '1'='1",
    "SQL comment": "fred' --",
    "SQL statement": "fred'; DROP TABLE users; --",
    "double-quoted tautology": '" OR ""="',
    "LIKE wildcard": "%",
    "LIKE underscore": "f_ed",
    "NUL byte": "fred\x00",
    "only NUL": "\x00",
    "10,000 characters": "a" * 10_000,
    "markup": "<script>alert(1)</script>",
    "path": "../../etc/passwd",
    "control characters": "fred\r\nX-Injected: 1",
}


@pytest.mark.parametrize("username", HOSTILE_USERNAMES.values(), ids=HOSTILE_USERNAMES.keys())
def test_hostile_usernames_fail_like_any_wrong_login(wsgi, testapp, users, unchanged, username):
    rest = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username=username, password="fred-password"),
        content_type="application/json",
    )
    assert_clear_answer(rest, LOGIN, "POST")
    assert rest.status_code == 401 and rest.json["errorMessages"] == ["Login failed"]

    header = basic(username.encode("utf-8"), b"fred-password")
    via_basic = send(wsgi, "GET", MYSELF, headers=[header])
    assert_clear_answer(via_basic, MYSELF)
    assert via_basic.status_code == 401

    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, "fred-password"
    page = form.submit(status=200)
    assert "username and password are incorrect" in page.text
    assert "<script>alert(1)</script>" not in page.text  # echoed escaped, never as markup
    assert page.headers["X-AUSERNAME"] == "anonymous"


@pytest.mark.parametrize("username", HOSTILE_USERNAMES.values(), ids=HOSTILE_USERNAMES.keys())
def test_hostile_usernames_find_no_user(wsgi, users, unchanged, username):
    response = send(
        wsgi,
        "GET",
        "/rest/api/2/user",
        query="username=" + _percent(username),
        headers=[basic("fred", "fred-password")],
    )
    assert_clear_answer(response, "/rest/api/2/user")
    assert response.status_code == 404


def _percent(text: str) -> str:
    return quote(text, safe="")


@FUZZ
@given(username=st.text(max_size=300), password=st.text(max_size=100))
def test_any_credentials_at_the_session_resource(wsgi, users, connection, username, password):
    before = snapshot(connection)
    response = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username=username, password=password),
        content_type="application/json",
    )
    assert_clear_answer(response, LOGIN, "POST")
    assert response.status_code in (400, 401, 403)
    assert snapshot(connection) == before


# --- a 1 MB password (item 14) -----------------------------------------------------------

MEGABYTE_PASSWORD = "p" * 1_000_000
#: Just under the REST body limit (1,000,000 bytes): the password cap is what refuses it.
ALMOST_A_MEGABYTE = "p" * 990_000


@pytest.fixture
def hasher_inputs(wsgi, monkeypatch) -> list[int]:
    """The byte length of every password that reaches the hash function."""
    context = wsgi.registry.passwords.context
    seen: list[int] = []

    def spy(name):
        original = getattr(context, name)

        def wrapper(secret, *args, **kw):
            seen.append(len(secret.encode("utf-8") if isinstance(secret, str) else secret))
            return original(secret, *args, **kw)

        return wrapper

    for name in ("hash", "verify", "verify_and_update"):
        monkeypatch.setattr(context, name, spy(name))
    return seen


@pytest.mark.parametrize("username", ["fred", "nobody"])
def test_a_megabyte_password_is_refused_before_hashing(
    wsgi, testapp, users, unchanged, hasher_inputs, username
):
    passwords = wsgi.registry.passwords
    attempts = [
        (
            413,
            lambda: send(
                wsgi,
                "POST",
                LOGIN,
                body=json_body(username=username, password=MEGABYTE_PASSWORD),
                content_type="application/json",
            ),
        ),
        (
            401,
            lambda: send(
                wsgi,
                "POST",
                LOGIN,
                body=json_body(username=username, password=ALMOST_A_MEGABYTE),
                content_type="application/json",
            ),
        ),
        (401, lambda: send(wsgi, "GET", MYSELF, headers=[basic(username, MEGABYTE_PASSWORD)])),
    ]
    for status, attempt in attempts:
        hashes, started = passwords.hash_count, time.perf_counter()
        response = attempt()
        elapsed = time.perf_counter() - started
        assert response.status_code == status, response.status
        assert_clear_answer(response, MYSELF)
        assert passwords.hash_count - hashes <= 1  # at most the dummy hash that equalises timing
        assert elapsed < 2, f"a 1 MB password took {elapsed:.2f} s"
    form = testapp.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, MEGABYTE_PASSWORD
    assert "username and password are incorrect" in form.submit(status=200).text
    assert hasher_inputs and max(hasher_inputs) <= passwords.max_bytes


def test_a_megabyte_password_on_the_account_and_admin_forms(testapp, users, hasher_inputs, wsgi):
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    confirm_websudo(testapp, "admin-password")
    page = testapp.get("/account")
    form = page.forms["password-form"]
    form["current_password"], form["new_password"], form["confirm_password"] = (
        MEGABYTE_PASSWORD,
        "new-password-1",
        "new-password-1",
    )
    assert "current password is not correct" in form.submit(status=400).text
    form = testapp.get("/account").forms["password-form"]
    form["current_password"] = "admin-password"
    form["new_password"] = form["confirm_password"] = MEGABYTE_PASSWORD
    assert "limited to 1024 bytes" in form.submit(status=400).text
    form = testapp.get("/admin/users").forms["create-user-form"]
    form["username"], form["password"] = "newcomer", MEGABYTE_PASSWORD
    assert "limited to 1024 bytes" in form.submit(status=400).text
    assert max(hasher_inputs) <= wsgi.registry.passwords.max_bytes


# --- unknown os_authType values at every endpoint ----------------------------------------

UNKNOWN_AUTHTYPES = ["bogus", "basicx", "basic,cookie", "\u00e9"]


@pytest.mark.parametrize(
    "value", UNKNOWN_AUTHTYPES, ids=["bogus", "basicx", "list", "non-ASCII"]
)
def test_unknown_os_authtype_is_a_400_naming_the_allowed_values(
    wsgi, users, fred_cookie, unchanged, value
):
    query = "os_authType=" + _percent(value)
    for path in endpoints(wsgi):
        for method in ("GET", "POST"):
            for headers in ([], [fred_cookie]):
                response = send(wsgi, method, path, query=query, headers=headers)
                assert_clear_answer(response, path, method)
                assert response.status_code == 400, (method, path, headers, response.status)
                assert ALLOWED_AUTHTYPES in messages(response)
                if is_rest(path):
                    assert "os_authType" in response.json["errors"]


@pytest.mark.parametrize("query", ["os_authType=", "os_authType=%20", "os_authType=&os_authType=none"])
def test_an_empty_os_authtype_is_no_demand(testapp, users, query):
    """As Seraph reads it: the default behaviour, as ``none`` (it was a 400, a difference
    from Jira that an outside review with real clients found)."""
    assert testapp.get(f"/rest/api/2/search?{query}").json["total"] == 0  # anonymous, no issues here
    testapp.get(f"/rest/api/2/myself?{query}", status=401)  # the resource's own answer
    assert testapp.get(f"/rest/api/2/myself?{query}",
                       headers={"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
                       ).json["name"] == "fred"
    testapp.get(f"/issues?os_authType=&os_authType=basic", status=401)  # "basic" stands


def test_unknown_os_authtype_with_basic_credentials_and_several_values(wsgi, users, unchanged):
    for query in ("os_authType=oauth", "os_authType=basic&os_authType=cookie"):
        response = send(wsgi, "GET", MYSELF, query=query, headers=[basic("fred", "fred-password")])
        assert_clear_answer(response, MYSELF)
        assert response.status_code == 400


def test_a_repeated_one_value_parameter_is_a_400_naming_it(testapp, users):
    """WebOb answers the last of a repeated parameter, Jira the first: an administrator's
    ``PUT user/password?username=alice&username=fred`` set fred's password (an outside
    review). Every parameter that takes one value refuses a second; lists take both."""
    auth = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-password").decode()}
    refused = testapp.put_json("/rest/api/2/user/password?username=alice&username=fred",
                               {"password": "dup-param-pass-1"}, headers=auth, status=400)
    assert refused.json == {"errorMessages": ["Give the query parameter 'username' once: it was given 2 times."],
                            "errors": {"username": "given more than once"}}
    testapp.get("/rest/api/2/myself", headers={
        "Authorization": "Basic " + base64.b64encode(b"fred:dup-param-pass-1").decode()}, status=401)
    both = testapp.get("/rest/api/2/user?username=alice&key=fred", headers=auth, status=400)
    assert both.json["errorMessages"] == ["Give username or key, not both: they name different users."]
    assert testapp.get("/rest/api/2/user?username=fred&key=fred", headers=auth).json["name"] == "fred"
    for path in ("/rest/api/2/user?username=fred&username=alice", "/rest/api/2/user?key=fred&key=alice",
                 "/rest/api/2/search?maxResults=1&maxResults=2", "/rest/api/2/search?jql=&jql=key%3DDEMO-1",
                 "/rest/api/2/search?startAt=0&startAt=1", "/rest/api/2/search?validateQuery=true&validateQuery=false"):
        answer = testapp.get(path, headers=auth, status=400)
        name = path.split("?")[1].split("=")[0]
        assert answer.json["errors"] == {name: f"Give the query parameter '{name}' once: it was given 2 times."} \
            or answer.json["errors"] == {name: "given more than once"}
    page = testapp.get("/issues?page=1&page=2", status=400)
    assert "Give the query parameter 'page' once" in page.html.text and page.html.select_one("a[href='/issues']")
    testapp.get("/issues?jql=a&jql=b", status=400)


def test_a_400_page_says_what_to_do_next(testapp):
    """An unknown os_authType and an address that is not UTF-8 showed the message alone (an
    outside review): each page now offers the next step."""
    page = testapp.get("/issues?os_authType=bogus&jql=project%3DDEMO", status=400)
    assert page.html.select_one("p.actions a")["href"] == "/issues?jql=project%3DDEMO"
    page = testapp.get("/issues/%ff", status=400)
    assert page.html.select_one("p.actions a")["href"] == "/"
    for path in ("//evil.example/", "/%2F%2Fevil.example/"):  # the link stays on this site
        page = testapp.get(path + "?os_authType=bogus", status=400)
        assert page.html.select_one("p.actions a")["href"] == "/"
    page = testapp.get("/issues?jql=%ff", status=400)
    assert page.html.select_one("p.actions a")["href"] == "/"


def test_os_authtype_values_are_case_insensitive(wsgi, users):
    response = send(wsgi, "GET", SERVER_INFO, query="os_authType=BASIC")
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    assert send(wsgi, "GET", SERVER_INFO, query="os_authType=None").status_code == 200


@FUZZ
@given(
    value=st.text(max_size=20).filter(
        lambda v: v.strip().lower() not in ("", "none", "basic", "cookie", "any")
    )
)
def test_any_other_os_authtype_is_a_400(wsgi, users, value):
    response = send(wsgi, "GET", SERVER_INFO, query="os_authType=" + _percent(value))
    assert_clear_answer(response, SERVER_INFO)
    assert response.status_code == 400


# --- everything at once, everywhere ------------------------------------------------------

HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=60)


@settings(
    deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_every_endpoint(wsgi, users, connection, data):
    paths = endpoints(wsgi)
    path = data.draw(st.sampled_from(paths), label="path")
    method = data.draw(
        st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
        label="method",
    )
    query = data.draw(
        st.one_of(
            st.just(b""),
            st.binary(max_size=30),
            st.sampled_from(
                [b"os_authType=basic", b"os_authType=any", b"os_destination=//evil.example"]
            ),
        ),
        label="query",
    )
    cookie_name = st.sampled_from([SESSION_COOKIE, REMEMBER_COOKIE, "csrf"])
    cookie_value = HEADER_TEXT.filter(lambda t: ";" not in t)
    basic_bytes = st.binary(max_size=40).map(lambda b: "Basic " + base64.b64encode(b).decode())
    user_agent = st.text(max_size=40).map(lambda t: t.encode("utf-8").decode("latin-1"))
    optional_headers = {
        "Cookie": st.builds(lambda n, v: f"{n}={v}", cookie_name, cookie_value),
        "Authorization": st.one_of(HEADER_TEXT, basic_bytes),
        "X-Atlassian-Token": HEADER_TEXT,
        "User-Agent": user_agent,
        "X-Forwarded-Host": HEADER_TEXT,  # no trusted proxy here: never used for a URL
    }
    headers = [
        (name, data.draw(values, label=name))
        for name, values in optional_headers.items()
        if data.draw(st.booleans(), label=f"with {name}")
    ]
    content_type = data.draw(
        st.sampled_from(
            [
                None,
                "application/json",
                "text/plain",
                "application/x-www-form-urlencoded",
                "multipart/form-data; boundary=XX",
                "application/json; charset=latin-1",
            ]
        )
    )
    body = data.draw(
        st.one_of(st.binary(max_size=200), st.just(b'{"username": "fred", "password": "wrong"}')),
        label="body",
    )
    before = snapshot(connection)
    response = send(
        wsgi,
        method,
        path,
        query=query.replace(b"#", b""),
        headers=headers,
        body=body,
        content_type=content_type,
    )
    assert_clear_answer(response, path, method)
    assert snapshot(connection) == before


# --- hostile values in the account and administration forms ------------------------------

HOSTILE_FORM_VALUES = {
    "NUL byte": "x\x00y",
    "10,000 characters": "a" * 10_000,
    "SQL": "' OR '1'='1",
    "markup": "<script>alert(1)</script>",
    "control characters": "x\r\ny\x1b[31m",
}


@pytest.mark.parametrize("value", HOSTILE_FORM_VALUES.values(), ids=HOSTILE_FORM_VALUES.keys())
def test_hostile_values_in_the_admin_create_user_form(testapp, users, connection, value):
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    confirm_websudo(testapp, "admin-password")
    for field in ("username", "display_name", "email"):
        form = testapp.get("/admin/users").forms["create-user-form"]
        form["username"], form["password"] = "newcomer", "good-password-1"
        form[field] = value
        before = snapshot(connection)[0]
        response = form.submit(expect_errors=True)
        assert response.status_int < 500
        assert "<script>alert(1)</script>" not in response.text
        if response.status_int == 400:
            assert response.html.select_one("#admin-error").text.strip()
            assert snapshot(connection)[0] == before
        else:  # accepted: stored as sent (display name and email cut at 255), never a NUL
            assert response.status_int == 303
            created = select(User).where(User.id.not_in([u.id for u in users.values()]))
            stored = connection.execute(created).one()
            assert form[field].value[:255] in (stored.username, stored.display_name, stored.email)
            assert not any(
                ch in text
                for text in (stored.username, stored.display_name, stored.email)
                for ch in "\x00\r\n"
            )
            connection.execute(User.__table__.delete().where(User.id == stored.id))


@pytest.mark.parametrize("value", HOSTILE_FORM_VALUES.values(), ids=HOSTILE_FORM_VALUES.keys())
def test_hostile_values_in_the_password_form(testapp, users, value):
    testapp.post_json(LOGIN, {"username": "fred", "password": "fred-password"})
    form = testapp.get("/account").forms["password-form"]
    form["current_password"] = value
    form["new_password"] = form["confirm_password"] = "new-password-1"
    assert "current password is not correct" in form.submit(status=400).text


# --- what the client says about itself ---------------------------------------------------


def test_control_characters_in_user_agent_and_forwarded_address_are_not_stored(
    wsgi, users, connection
):
    """Both end up in the sessions and audit tables (PostgreSQL refuses NUL in text)."""
    from appserver.models import AuthEvent

    headers = [
        ("User-Agent", "Mozilla\x00/5.0\r\n\x1b[31m" + "x" * 1000),
        ("X-Forwarded-For", "10.0.0.1\x00, 10.0.0.2"),
    ]
    for password, status in (("wrong", 401), ("fred-password", 200)):
        response = send(
            wsgi,
            "POST",
            LOGIN,
            headers=headers,
            body=json_body(username="fred", password=password),
            content_type="application/json",
        )
        assert_clear_answer(response, LOGIN, "POST")
        assert response.status_code == status
    stored = connection.execute(select(UserSession.user_agent, UserSession.remote_addr)).all()
    stored += connection.execute(select(AuthEvent.user_agent, AuthEvent.remote_addr)).all()
    assert stored
    for user_agent, address in stored:
        assert user_agent.startswith("Mozilla/5.0[31m") and len(user_agent) == 512
        assert address == "10.0.0.1"


FORM_FIELDS = [
    "username",
    "password",
    "display_name",
    "email",
    "admin",
    "current_password",
    "new_password",
    "confirm_password",
    "os_username",
    "os_password",
    "os_cookie",
    "os_destination",
    "websudo_password",
    "name",
    "expiration_days",
    "expirationDuration",
    "jql",
    "startAt",
    "maxResults",
]


@pytest.fixture
def admin_session(wsgi, users) -> list[tuple[str, str]]:
    """Headers of a logged-in administrator that pass the CSRF check: a fuzzed request
    reaches the views themselves."""
    login = send(
        wsgi,
        "POST",
        LOGIN,
        body=json_body(username="admin", password="admin-password"),
        content_type="application/json",
    )
    cookie = ("Cookie", f"{SESSION_COOKIE}={login.json['session']['value']}")
    page = send(wsgi, "GET", "/account", headers=[cookie]).body.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    elevated = send(  # the WebSudo prompt, so that admin pages answer rather than redirect
        wsgi, "POST", "/websudo", headers=[cookie, ("X-CSRF-Token", token)],
        body=b"websudo_password=admin-password", content_type="application/x-www-form-urlencoded",
    )
    assert elevated.headers["X-Atlassian-WebSudo"] == "Has-Authentication"
    # The confirmation rotated the session: its new cookie, and the CSRF token bound to it.
    cookie = ("Cookie", elevated.headers["Set-Cookie"].split(";", 1)[0])
    page = send(wsgi, "GET", "/account", headers=[cookie]).body.decode()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    return [cookie, ("X-CSRF-Token", token), ("X-Atlassian-Token", "no-check")]


@settings(
    deadline=None, max_examples=120, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_fuzz_every_endpoint_as_an_administrator(wsgi, admin_session, data):
    """Past authentication and CSRF, with arbitrary form or JSON fields: still never a 500.
    (An administrator may legitimately change things here, so only the answers are judged.)"""
    path = data.draw(st.sampled_from(endpoints(wsgi)), label="path")
    method = data.draw(st.sampled_from(["GET", "POST", "DELETE"]), label="method")
    fields = data.draw(
        st.dictionaries(st.sampled_from(FORM_FIELDS), st.text(max_size=40)), label="fields"
    )
    encoding = data.draw(st.sampled_from(["form", "json", "query"]), label="encoding")
    query, body, content_type = "", b"", None
    if encoding == "form":
        body = urlencode(fields).encode()
        content_type = "application/x-www-form-urlencoded"
    elif encoding == "json":
        body, content_type = json.dumps(fields).encode(), "application/json"
    else:
        query = urlencode(fields)
    response = send(
        wsgi, method, path, query=query, headers=admin_session, body=body, content_type=content_type
    )
    assert_clear_answer(response, path, method)


# --- Host headers (issue 10) -------------------------------------------------------------

HOSTILE_HOSTS = {
    "another site": "evil.example",
    "userinfo": "evil.example:80@localhost",
    "userinfo the other way": "localhost@evil.example",
    "suffix": "localhost.evil.example",
    "path": "localhost/evil.example",
    "two hosts": "localhost evil.example",
    "port out of range": "localhost:65536",
    "empty port": "localhost:",
    "empty": "",
    "unterminated IPv6": "[::1",
    "IPv6 with a zone": "[fe80::1%25eth0]",
    "another IPv6": "[::2]:6543",
    "Latin-1": "l\xf6calhost",
    "CRLF": "localhost\r\nX-Injected: 1",
    "10,000 characters": "a" * 10_000,
    "trailing dots": "localhost..",
}


@pytest.mark.parametrize("host", HOSTILE_HOSTS.values(), ids=HOSTILE_HOSTS.keys())
def test_hostile_hosts_are_a_400_everywhere(wsgi, users, fred_cookie, unchanged, host):
    for path in endpoints(wsgi):
        for headers in ([("Host", host)], [("Host", host), fred_cookie],
                        [("Host", host), basic("fred", "wrong")]):
            response = send(wsgi, "GET", path, query="os_destination=/account", headers=headers)
            assert_clear_answer(response, path)
            assert response.status_code == 400, (path, response.status)
            assert "Host" in messages(response) or "host name" in messages(response)
            assert "Set-Cookie" not in response.headers and "Location" not in response.headers


@settings(
    deadline=None, max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(host=st.one_of(
    HEADER_TEXT,
    st.from_regex(r"(localhost|127\.0\.0\.1|\[::1\])\.?(:[0-9]{0,6})?[@/.a-z]{0,3}", fullmatch=True),
))
def test_any_host_is_refused_or_builds_urls_on_itself(wsgi, users, host):
    """Whatever the Host, the answer is a clean 400, or (for an allowed name) every URL the
    response builds starts with exactly that host."""
    for path, query in (("/account", ""), (SERVER_INFO, ""), ("/login", "os_destination=/x")):
        response = send(wsgi, "GET", path, query=query, headers=[("Host", host)])
        assert response.status_code < 500, (host, response.status)
        if response.status_code == 400:
            assert "Location" not in response.headers
            continue
        assert re.fullmatch(r"(localhost|127\.0\.0\.1|\[::1\])\.?(:[0-9]{1,5})?", host, re.IGNORECASE), host
        # WebOb leaves out http's default port (Host "localhost:80" builds http://localhost/):
        # the same address.
        origin = "http://" + re.sub(r":80$", "", host)
        if "Location" in response.headers:
            assert response.headers["Location"].startswith(origin + "/")
        if path == SERVER_INFO:
            assert response.json["baseUrl"] == origin


# --- ids (issue 10) ----------------------------------------------------------------------

HOSTILE_IDS = {
    "2**31": str(2**31),
    "2**63": str(2**63),
    "10**23": str(10**23),
    "1,000 digits": "9" * 1000,
    "zero": "0",
    "leading zeros": "0" * 20 + "1",
    "Arabic-Indic digits": "\u0663\u0664",
    "fullwidth digits": "\uff11\uff12",
    "superscript": "\u00b2",
}


def id_endpoints(app) -> list[str]:
    """Every route with an id or key in its path, that placeholder left as ``\\0``."""
    templates = []
    for route in app.routes_mapper.get_routes():
        pattern = "/" + route.pattern.lstrip("/")
        if re.search(r"\{(id|id_or_key|id_or_name|key)[:}]", pattern):
            templates.append(_PLACEHOLDER.sub(
                lambda m: "\0" if m.group(1) in ("id", "id_or_key", "id_or_name", "key") else _sample(m.group(2)),
                pattern,
            ))
    return templates


@pytest.mark.parametrize("value", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
def test_hostile_ids_are_answered_like_missing_ones(wsgi, admin_session, value):
    templates = id_endpoints(wsgi)
    # a session, a token (page and REST), an account (its actions, their confirmation page
    # and its password form), an issue (REST and page), a project, a status, an issue type
    assert len(templates) == 11, templates
    for template in templates:
        path = template.replace("\0", value).encode("utf-8")
        for method in ("GET", "POST"):
            response = send(wsgi, method, path, headers=admin_session)
            assert_clear_answer(response, path, method)
            assert response.status_code in (303, 404, 405), (template, method, response.status)


@pytest.mark.parametrize("value", [2**31, 2**63, 10**23, -(2**63), 1e300, "9" * 1000, [1], {"a": 1}])
@pytest.mark.parametrize("name", ["startAt", "maxResults"])
def test_hostile_paging_numbers_are_a_400(wsgi, users, unchanged, name, value):
    response = send(wsgi, "POST", "/rest/api/2/search", body=json.dumps({name: value}).encode(),
                    content_type="application/json")
    assert_clear_answer(response, "/rest/api/2/search", "POST")
    assert response.status_code == 400 and name in response.json["errors"]


# --- non-Latin-1 usernames (issue 10) ------------------------------------------------------


@pytest.fixture
def legacy_account(app_request) -> Any:
    """``legacy_account(name)`` makes an account under any name, as an older version (or
    straight SQL) could have; False when the name is taken or cannot be looked up."""
    from appserver.models import canonical_username

    password_hash = app_request.passwords.hash("a long password")  # once, not per example
    taken = {"fred", "alice", "admin"}

    def make(username: str) -> bool:
        key = canonical_username(username)
        if not key or key in taken or len(username) > 255:
            return False
        taken.add(key)
        now = app_request.now
        app_request.dbsession.add(User(
            username=username, username_key=key, display_name=username, email="",
            password_hash=password_hash, active=True, admin=False, created_at=now,
            password_changed_at=now, login_count=0, current_failed_logins=0, total_failed_logins=0,
        ))
        app_request.dbsession.flush()
        return True

    return make


@settings(
    deadline=None, max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(username=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
                        min_size=1, max_size=40)
       # a name that is itself a traceback marker ("sqlalchemy.url") is shown on every page
       .filter(lambda name: not any(marker in name for marker in TRACEBACK_MARKERS)))
def test_any_username_gets_its_answer_through_every_channel(wsgi, users, legacy_account, username):
    """X-AUSERNAME is percent-encoded UTF-8: whatever the name, every answer to its owner
    is a clean one, and the header decodes back to the name."""
    if not legacy_account(username):
        return
    login = send(wsgi, "POST", LOGIN, body=json_body(username=username, password="a long password"),
                 content_type="application/json")
    assert login.status_code == 200, login.body[:300]
    header = login.headers["X-AUSERNAME"]
    assert header.isascii() and header.isprintable() and unquote(header) == username
    cookie = ("Cookie", f"{SESSION_COOKIE}={login.json['session']['value']}")
    for path in ("/", "/account", MYSELF, "/issues"):
        response = send(wsgi, "GET", path, headers=[cookie])
        assert_clear_answer(response, path)
        assert response.status_code == 200 and response.headers["X-AUSERNAME"] == header
    if ":" not in username:
        response = send(wsgi, "GET", MYSELF, headers=[basic(username, "a long password")])
        assert response.status_code == 200 and response.json["name"] == username


# --- long and many-termed JQL (issue 10) ---------------------------------------------------

LONG_JQL = {
    "10 KB of words": 'text ~ "' + "a " * 5000 + '"',
    "a megabyte": "text ~ " + "a" * 1_000_000,
    "many clauses": " AND ".join(["status = Open"] * 500),
    "many sort keys": "ORDER BY " + ", ".join(["key"] * 500),
    "deeply nested parentheses": "(" * 1000 + "status = Open" + ")" * 1000,
    "many unquoted words": "text ~ " + " ".join(["w"] * 1000),
    "long quoted word": 'text ~ "' + "x" * 1990 + '"',
}


@pytest.mark.parametrize("jql", LONG_JQL.values(), ids=LONG_JQL.keys())
def test_long_jql_is_a_clear_400_at_every_search(wsgi, users, fred_cookie, unchanged, jql):
    for headers in ([], [fred_cookie]):
        for method, path, query, body, content_type in (
            ("GET", "/rest/api/2/search", urlencode({"jql": jql}), b"", None),
            ("POST", "/rest/api/2/search", "", json.dumps({"jql": jql}).encode(), "application/json"),
            ("GET", "/issues", urlencode({"jql": jql}), b"", None),
        ):
            response = send(wsgi, method, path, query=query, headers=headers, body=body,
                            content_type=content_type)
            assert_clear_answer(response, path, method)
            assert response.status_code in (200, 400, 413), (method, path, response.status)


# --- An outside review's second round: values accepted wrongly or refused wrongly ----------


@pytest.mark.parametrize("body, accepted", [
    (b'{"username": "fred", "password": NaN}', False),
    (b'{"username": "fred", "password": "fred-password", "x": Infinity}', False),
    (b'{"username": "fred", "password": "fred-password", "x": -Infinity}', False),
    (b'\xef\xbb\xbf{"username": "fred", "password": "fred-password"}', True),  # a UTF-8 BOM
])
def test_json_bodies_are_read_as_jackson_reads_them(wsgi, users, body, accepted):
    """NaN and Infinity are Python's extensions, not JSON (Jackson refuses them); a byte
    order mark before UTF-8 is allowed (Jackson skips it; Python refused the body)."""
    response = send(wsgi, "POST", LOGIN, body=body, content_type="application/json")
    assert_clear_answer(response, LOGIN, "POST")
    assert response.status_code == (200 if accepted else 400)
    if not accepted:
        assert "not valid JSON" in messages(response)


@pytest.mark.parametrize("value, says", [
    ("0000000000000", None), ("-0", None), ("007", None),
    ("99999999999999999999", "must be at most"), ("-99999999999999999999", "must not be negative"),
    ("1" + "0" * 5000, "must be at most"), ("1e3", "is not a whole number"),
])
def test_paging_numbers_are_judged_by_value_not_by_length(wsgi, users, value, says):
    response = send(wsgi, "GET", "/rest/api/2/search", query=f"startAt={value}")
    assert_clear_answer(response, "/rest/api/2/search")
    if says is None:
        assert response.status_code == 200 and response.json["startAt"] == int(value)
    else:
        assert response.status_code == 400 and says in messages(response)


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "TRACE", "OPTIONS"])
def test_static_files_answer_get_and_head_only(wsgi, method):
    """A POST met the CSRF check ("this form has expired", and a CSRF cookie), a TRACE got
    the stylesheet."""
    response = send(wsgi, method, "/static/style.css")
    assert response.status_code == 405 and response.headers["Allow"] == "GET, HEAD"
    assert "Set-Cookie" not in response.headers
    assert "use GET or HEAD" in response.text
    assert send(wsgi, "GET", "/static/style.css").status_code == 200


def failed_logins(connection, username: str) -> int:
    return connection.execute(select(User.current_failed_logins).where(User.username == username)).scalar()


def test_an_empty_password_on_the_websudo_and_password_forms_counts_no_failure(testapp, users, connection):
    """Nothing was tried, as the login page says ("Enter your username and password"): no
    hash, no failure towards the lock-out (three empty WebSudo submits locked the admin)."""
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    for _ in range(4):
        form = testapp.get("/websudo", params={"os_destination": "/admin/users"}).forms["websudo-form"]
        form["websudo_password"] = ""
        assert "Enter your password." in form.submit(status=400).text
    assert failed_logins(connection, "admin") == 0
    form = testapp.get("/account").forms["password-form"]
    form["new_password"] = form["confirm_password"] = "new-password-1"
    assert "Enter your current password." in form.submit(status=400).text
    assert failed_logins(connection, "admin") == 0
    assert confirm_websudo(testapp, "admin-password").status_int == 303  # not locked


@pytest.mark.parametrize("username", ["ß" * 200, "\ufdfa" * 20])
def test_a_username_whose_lookup_key_is_too_long_is_refused(testapp, users, connection, username):
    """The case-free lookup key is stored too: "ß" folds to "ss", U+FDFA to 18 characters.
    PostgreSQL refused the row (a 500), SQLite kept a key longer than its column."""
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    confirm_websudo(testapp, "admin-password")
    form = testapp.get("/admin/users").forms["create-user-form"]
    form["username"], form["password"] = username, "good-password-1"
    before = snapshot(connection)[0]
    response = form.submit(status=400)
    assert "Choose a shorter username" in response.html.select_one("#admin-error").text
    assert snapshot(connection)[0] == before


@pytest.mark.parametrize("text", ["nbsp\u00a0password", "zwj👨\u200d👩\u200d👧password", "\u200bzero-width-words"])
def test_format_characters_are_welcome_in_passwords_and_token_names(testapp, users, text):
    """A no-break space, a zero-width joiner in an emoji sequence: text, not control
    characters (``str.isprintable`` refused them; display names took them already)."""
    auth = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    made = testapp.post_json("/rest/pat/latest/tokens", {"name": text, "expirationDuration": 1},
                             headers=auth, status=201)
    assert made.json["name"] == text
    testapp.put_json("/rest/api/2/myself/password", {"currentPassword": "fred-password", "password": text},
                     headers=auth, status=204)
    basic_new = "Basic " + base64.b64encode(f"fred:{text}".encode()).decode()
    assert testapp.get("/rest/api/2/myself", headers={"Authorization": basic_new}).json["name"] == "fred"
    for refused in ("tab\there", "line\u2028break"):
        testapp.post_json("/rest/pat/latest/tokens", {"name": refused, "expirationDuration": 1},
                          headers={"Authorization": basic_new}, status=400)


def test_a_token_name_that_is_no_string_says_so(testapp, users):
    auth = {"Authorization": "Basic " + base64.b64encode(b"fred:fred-password").decode()}
    response = testapp.post_json("/rest/pat/latest/tokens", {"name": 5, "expirationDuration": 1},
                                 headers=auth, status=400)
    assert response.json["errors"]["name"] == "The token name must be a string."


def test_a_utf8_user_agent_is_shown_as_sent(wsgi, users, connection):
    """WSGI hands headers over as Latin-1: "Łódź" was stored as "ÅÃ³dÅº" (with C1 controls
    dropped), on the account page's list of sessions."""
    agent = "Mozilla/5.0 (Łódź; 日本) 😀"
    response = send(wsgi, "POST", LOGIN, headers=[("User-Agent", agent.encode().decode("latin-1"))],
                    body=json_body(username="fred", password="fred-password"), content_type="application/json")
    assert response.status_code == 200
    stored = connection.execute(select(UserSession.user_agent).order_by(UserSession.id.desc())).scalars().first()
    assert stored == agent


def test_the_confirmation_page_of_an_account_that_is_gone_is_a_404(testapp, users):
    """As its POST answers: it redirected to the users list without a word."""
    testapp.post_json(LOGIN, {"username": "admin", "password": "admin-password"})
    confirm_websudo(testapp, "admin-password")
    for path in ("/admin/users/2147483647/deactivate", "/admin/users/999999/revoke-tokens"):
        response = testapp.get(path, status=404)
        assert "That account no longer exists." in response.text


def test_a_refused_host_is_named_in_the_log_with_the_setting(wsgi, caplog):
    """The page says "use the server's own address"; the operator reads which name came, and
    where the names are set."""
    with caplog.at_level(logging.WARNING, logger="appserver.security.perimeter"):
        assert send(wsgi, "GET", "/", headers=[("Host", "new-name.example")]).status_code == 400
    assert "refused Host 'new-name.example': not in appserver.allowed_hosts (APPSERVER_ALLOWED_HOSTS)" in caplog.text
