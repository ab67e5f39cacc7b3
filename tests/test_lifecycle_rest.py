"""The REST login lifecycle, step by step, in Jira's shapes (issue 2, acceptance 3;
reference section 5): ``POST``/``GET``/``DELETE /rest/auth/1/session`` (and ``latest``),
``/rest/api/2/myself`` and ``serverInfo``, and every way a request can be wrong.
"""
from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from appserver.demo import seed_demo
from appserver.models import AuthEvent, User, UserSession
from appserver.security.tokens import hash_token

VERSIONS = ["1", "latest"]
JIRA_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


def login(testapp, username="fred", password=None, version="1", **kw):
    return testapp.post_json(
        f"/rest/auth/{version}/session",
        {"username": username, "password": password or f"{username}-password"},
        **kw,
    )


def session_cookie(response) -> str:
    (header,) = [h for h in response.headers.getall("Set-Cookie") if h.startswith("appserver.session=")]
    return header


def attributes(header: str) -> dict[str, str]:
    """Set-Cookie attributes, lower-cased names: ``{"path": "/", "httponly": "", ...}``."""
    parts = [part.strip() for part in header.split(";")[1:]]
    return {name.lower(): value for name, _, value in (part.partition("=") for part in parts)}


def assert_jira_error(response, status: int) -> list[str]:
    assert response.status_int == status
    assert response.content_type == "application/json"
    assert set(response.json) == {"errorMessages", "errors"}
    assert isinstance(response.json["errors"], dict)
    if status == 401:  # RFC 7235: every 401 carries a challenge
        assert response.headers["WWW-Authenticate"]
    return response.json["errorMessages"]


# --- POST: log in ----------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_login_returns_jiras_body_and_a_cookie(testapp, users, version):
    response = login(testapp, version=version)
    assert response.status_int == 200
    token = response.json["session"]["value"]
    assert response.json == {
        "session": {"name": "appserver.session", "value": token},
        "loginInfo": {"failedLoginCount": 0, "loginCount": 1},
    }
    assert response.headers["X-Seraph-LoginReason"] == "OK"
    assert response.headers["X-AUSERNAME"] == "fred"
    assert response.headers["Cache-Control"] == "no-store"

    header = session_cookie(response)
    assert header.startswith(f"appserver.session={token};")
    cookie = attributes(header)
    assert cookie["path"] == "/"
    assert "httponly" in cookie
    assert cookie["samesite"].lower() == "lax"
    assert cookie["max-age"] == "43200"  # never outlives the server-side absolute expiry
    assert "secure" not in cookie  # this configuration is plain http (development)
    assert "domain" not in cookie


def test_login_info_counts_logins_and_failures_in_jiras_time_format(testapp, users, clock):
    login(testapp)
    clock.advance(3600)
    login(testapp, password="wrong", status=401)
    clock.advance(60)
    info = login(testapp).json["loginInfo"]
    assert info["loginCount"] == 2
    assert info["failedLoginCount"] == 1
    assert info["previousLoginTime"] == "2026-01-01T12:00:00.000+0000"
    assert info["lastFailedLoginTime"] == "2026-01-01T13:00:00.000+0000"
    assert JIRA_TIME.match(info["previousLoginTime"])


def test_the_username_is_case_insensitive(testapp, users):
    assert login(testapp, username="FRED", password="fred-password").headers["X-AUSERNAME"] == "fred"


@pytest.mark.parametrize("username", ["fred", "nobody"])
def test_wrong_credentials_are_401_login_failed(testapp, users, username):
    """Unknown user or wrong password: the same answer (nothing says which)."""
    response = login(testapp, username=username, password="not-the-password", status=401)
    assert assert_jira_error(response, 401) == ["Login failed"]
    assert response.json["errors"] == {}
    assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert response.headers["WWW-Authenticate"] == "JIRA REST POST"  # not Basic: no browser dialog
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "appserver.session=" not in response.headers.get("Set-Cookie", "")


def test_an_inactive_account_fails_like_a_wrong_password(testapp, users, dbsession):
    users["fred"].active = False
    dbsession.flush()
    response = login(testapp, status=401)
    assert response.json == {"errorMessages": ["Login failed"], "errors": {}}
    assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        ("{not json", "application/json", 400),
        ('["fred", "fred-password"]', "application/json", 400),
        ('"fred"', "application/json", 400),
        ("", "application/json", 400),
        ("username=fred&password=fred-password", "application/x-www-form-urlencoded", 415),
        ('{"username": "fred", "password": "fred-password"}', "text/plain", 415),
        ('{"username": "fred", "password": "fred-password"}', "", 415),
    ],
    ids=["broken", "array", "string", "empty", "form", "text-plain", "no-type"],
)
def test_bodies_that_are_not_a_json_object_are_refused_in_jiras_shape(testapp, users, body, content_type, status):
    response = testapp.post(
        "/rest/auth/1/session", body, headers={"Content-Type": content_type} if content_type else {},
        expect_errors=True,
    )
    (message,) = assert_jira_error(response, status)
    assert "JSON" in message
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "Set-Cookie" not in response.headers


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"username", "password"}),
        ({"username": "fred"}, {"password"}),
        ({"password": "fred-password"}, {"username"}),
        ({"username": "", "password": "fred-password"}, {"username"}),
        ({"username": ["fred"], "password": "fred-password"}, {"username"}),
        ({"username": "fred", "password": 12345678}, {"password"}),
    ],
)
def test_missing_or_mistyped_fields_are_400_naming_the_field(testapp, users, body, fields):
    response = testapp.post_json("/rest/auth/1/session", body, expect_errors=True)
    assert_jira_error(response, 400)
    assert set(response.json["errors"]) == fields
    assert "Set-Cookie" not in response.headers


# --- GET: who am I ---------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_get_with_the_cookie_returns_self_name_and_login_info(testapp, users, version):
    login(testapp)
    response = testapp.get(f"/rest/auth/{version}/session")
    assert response.json == {
        "self": "http://localhost/rest/api/2/user?username=fred",
        "name": "fred",
        "loginInfo": {"failedLoginCount": 0, "loginCount": 1},
    }
    assert response.headers["X-AUSERNAME"] == "fred"
    assert response.headers["X-Seraph-LoginReason"] == "OK"
    # self really is the user resource
    assert testapp.get("/rest/api/2/user?username=fred").json["name"] == "fred"


@pytest.mark.parametrize("version", VERSIONS)
def test_get_without_a_session_is_401(testapp, users, version):
    response = testapp.get(f"/rest/auth/{version}/session", status=401)
    assert_jira_error(response, 401)
    assert not response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "X-Seraph-LoginReason" not in response.headers  # anonymous requests get no stamp


# --- DELETE: log out -------------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_is_204_and_the_cookie_is_dead_on_the_server(testapp, users, dbsession, version):
    token = login(testapp).json["session"]["value"]
    response = testapp.delete(f"/rest/auth/{version}/session", status=204)
    assert response.body == b""
    assert response.headers["X-Seraph-LoginReason"] == "OUT"
    deletion = attributes(session_cookie(response))
    assert session_cookie(response).startswith("appserver.session=;")
    assert deletion["max-age"] == "0" and deletion["path"] == "/" and "httponly" in deletion
    assert deletion["samesite"].lower() == "lax"  # same attributes as the cookie it deletes

    row = dbsession.scalar(select(UserSession).where(UserSession.token_hash == hash_token(token)))
    assert row.revoked_at is not None
    # A client that ignores the deletion and replays the cookie gets 401, not anonymous.
    testapp.set_cookie("appserver.session", token)
    replay = testapp.get("/rest/api/2/myself", status=401)
    assert "expired" in replay.json["errorMessages"][0]
    assert not replay.headers.getall("Set-Cookie")  # rule 1: kept, so the next one is a 401 too


def test_delete_with_basic_and_a_live_cookie_ends_that_session(testapp, users, dbsession):
    """Jira's DELETE destroys "the existing session, if any": a client that sends its session
    cookie beside Basic logs that session out (it answered 204 and left it alive)."""
    import base64

    token = login(testapp).json["session"]["value"]
    testapp.reset()
    basic = "Basic " + base64.b64encode(b"fred:fred-password").decode()
    cookie = f"appserver.session={token}"
    response = testapp.delete("/rest/auth/1/session", headers={"Authorization": basic, "Cookie": cookie}, status=204)
    assert session_cookie(response).startswith("appserver.session=;")
    testapp.reset()
    testapp.get("/rest/api/2/myself", headers={"Cookie": cookie}, status=401)
    events = dbsession.scalars(select(AuthEvent.event).where(AuthEvent.user_id == users["fred"].id))
    assert "logout" in list(events)
    # Basic alone still has no session to end: 204, nothing else happens.
    testapp.delete("/rest/auth/1/session", headers={"Authorization": basic}, status=204)


@pytest.mark.parametrize("version", VERSIONS)
def test_delete_without_a_session_is_401(testapp, users, version):
    assert_jira_error(testapp.delete(f"/rest/auth/{version}/session", status=401), 401)


def test_delete_with_basic_credentials_is_204_with_no_session_to_end(testapp, users):
    """Jira: "destroying the existing session, if any", 401 only for a caller who is not
    authenticated. A 401 to right credentials would read as wrong ones (the jira client's
    ``kill_session()`` raised); the credentials go on working, nothing was ended."""
    response = testapp.delete("/rest/auth/1/session", headers=basic_auth("fred", "fred-password"), status=204)
    assert response.headers["X-AUSERNAME"] == "fred" and "Set-Cookie" not in response.headers
    testapp.get("/rest/api/2/myself", headers=basic_auth("fred", "fred-password"), status=200)
    refused = testapp.delete("/rest/auth/1/session", headers=basic_auth("fred", "wrong"), status=401)
    assert_jira_error(refused, 401)
    assert refused.headers["X-AUSERNAME"] == "anonymous"  # a 401 names nobody


def test_other_methods_on_the_session_resource_are_405(testapp, users):
    response = testapp.put_json("/rest/auth/1/session", {}, status=405)
    assert_jira_error(response, 405)


# --- The whole walk-through of the README ----------------------------------------------------


def test_log_in_use_the_cookie_log_out_see_the_401(testapp, users):
    token = login(testapp).json["session"]["value"]
    me = testapp.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={token}"})
    assert me.json["name"] == "fred" and me.json["displayName"] == "Fred Developer"
    assert me.headers["X-AUSERNAME"] == "fred"
    testapp.delete("/rest/auth/1/session", headers={"Cookie": f"appserver.session={token}"}, status=204)
    after = testapp.get("/rest/api/2/myself", headers={"Cookie": f"appserver.session={token}"}, status=401)
    assert after.headers["X-AUSERNAME"] == "anonymous"


def test_a_cookie_client_keeps_getting_the_401_until_it_logs_in_again(testapp, app_request, clock):
    """Its cookie jar honours Set-Cookie: had the 401 deleted the stale cookie, the client's
    next request would go without it and be answered with the 5 public issues, rule 1's very
    case (an outside review: the unmodified jira client, shared by threads, got them)."""
    for _ in seed_demo(app_request):  # fred, and the 200 issues of which 5 are public
        pass
    app_request.dbsession.flush()
    login(testapp)  # WebTest's cookie jar keeps the session cookie, as a client's does
    assert testapp.get("/rest/api/2/search?maxResults=0").json["total"] == 200
    clock.advance(1800)  # idle: the session is over
    for _ in range(3):
        refused = testapp.get("/rest/api/2/search?maxResults=0", status=401)
        assert "Your session has expired" in refused.json["errorMessages"][0]
        assert not refused.headers.getall("Set-Cookie")
    login(testapp)
    assert testapp.get("/rest/api/2/search?maxResults=0").json["total"] == 200
    clock.advance(1800)
    testapp.get("/issues")  # a page: there a stale cookie means anonymous, and is deleted
    assert testapp.get("/rest/api/2/search?maxResults=0").json["total"] == 5


@pytest.mark.parametrize("first", [
    "/rest/api/2/search?maxResults=0&os_authType=cookie",
    "/rest/api/2/search?maxResults=0&os_authType=any",
    "/rest/api/2/search?maxResults=0&os_authType=basic",
    "/rest/api/2/search?maxResults=0&os_authType=bogus",
    "a wrong password at the login resource",
])
def test_no_refusal_under_rest_leaves_the_client_anonymous(testapp, app_request, clock, first):
    """Whatever refuses a client with a stale cookie under /rest (an os_authType demand, a
    400, a failed login), the cookie stays, and its next plain request is rule 1's 401, not
    the 5 public issues (an adversarial review of the first fix found these five)."""
    for _ in seed_demo(app_request):
        pass
    app_request.dbsession.flush()
    login(testapp)
    clock.advance(1800)  # idle: the session is over
    if first.startswith("/"):
        refused = testapp.get(first, expect_errors=True)
    else:
        refused = login(testapp, password="wrong-password", status=401)
    assert refused.status_int in (400, 401)
    assert not refused.headers.getall("Set-Cookie")
    testapp.get("/rest/api/2/search?maxResults=0", status=401)


# --- The other resources ---------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2", "latest"])
def test_myself(testapp, users, version):
    login(testapp)
    assert testapp.get(f"/rest/api/{version}/myself").json == {
        "self": "http://localhost/rest/api/2/user?username=fred",
        "key": "fred",
        "name": "fred",
        "emailAddress": "fred@example.com",
        "displayName": "Fred Developer",
        "active": True,
        "timeZone": "UTC",
        "locale": "en_US",
    }


def test_myself_anonymous_is_401_not_a_redirect(testapp, users):
    response = testapp.get("/rest/api/2/myself", status=401)
    assert "Authentication required" in assert_jira_error(response, 401)[0]
    assert response.headers["WWW-Authenticate"].startswith("Session ")
    assert "login-url=\"http://localhost/rest/auth/1/session\"" in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("version", ["2", "latest"])
def test_server_info_is_public_and_has_version_numbers(testapp, version):
    response = testapp.get(f"/rest/api/{version}/serverInfo")
    info = response.json
    assert info["baseUrl"] == "http://localhost"
    assert info["deploymentType"] == "Server"
    assert len(info["versionNumbers"]) == 3 and all(isinstance(n, int) for n in info["versionNumbers"])
    assert info["version"].startswith(".".join(str(n) for n in info["versionNumbers"][:1]))
    assert info["serverTime"] == "2026-01-01T12:00:00.000+0000"
    assert response.headers["X-AUSERNAME"] == "anonymous"


def test_user_resource_finds_users_and_404s_in_jiras_shape(testapp, users):
    login(testapp)
    assert testapp.get("/rest/api/2/user?username=ALICE").json["name"] == "alice"
    response = testapp.get("/rest/api/2/user?username=nobody", status=404)
    assert assert_jira_error(response, 404) == ["The user named 'nobody' does not exist"]


def test_unknown_rest_paths_are_json_404s(testapp):
    response = testapp.get("/rest/api/2/no-such-thing", status=404)
    assert_jira_error(response, 404)
    assert response.headers["X-AUSERNAME"] == "anonymous"


def test_every_rest_response_names_the_user(testapp, users):
    login(testapp)
    for path in ("/rest/api/2/serverInfo", "/rest/api/2/myself", "/rest/auth/1/session"):
        assert testapp.get(path).headers["X-AUSERNAME"] == "fred"
    assert testapp.get("/rest/nothing", status=404).headers["X-AUSERNAME"] == "fred"


def test_basic_auth_serves_without_a_session_row(testapp, users, dbsession):
    before = dbsession.scalar(select(UserSession.id).order_by(UserSession.id.desc()).limit(1))
    for _ in range(3):
        response = testapp.get("/rest/api/2/myself", headers=basic_auth("fred", "fred-password"))
        assert response.json["name"] == "fred"
        assert response.headers["X-Seraph-LoginReason"] == "OK"
        assert "Set-Cookie" not in response.headers
    assert dbsession.scalar(select(UserSession.id).order_by(UserSession.id.desc()).limit(1)) == before


def test_a_successful_login_upgrades_an_old_hash(testapp, users, dbsession, app):
    from passlib.hash import pbkdf2_sha256

    users["fred"].password_hash = pbkdf2_sha256.hash("fred-password")
    dbsession.flush()
    login(testapp)
    dbsession.expire_all()
    assert dbsession.scalar(select(User.password_hash).where(User.username == "fred")).startswith("$argon2id$")


def basic_auth(username: str, password: str) -> dict[str, str]:
    import base64

    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}
