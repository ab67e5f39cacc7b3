"""Personal access tokens (issue 12): Jira's REST resource /rest/pat/{1,latest}/tokens, the
Bearer rules (stricter than Jira: a token that cannot be used is a 401, never anonymous), the
account and admin pages, the audit trail and the command line."""
from __future__ import annotations

import base64
import hashlib

import pytest
import webtest
from sqlalchemy import func, select

from appserver.models import AuthEvent, PersonalToken, UserSession
from appserver.security import personal_tokens

from .support import confirm_websudo
from .test_admin import action_form

TOKENS = "/rest/pat/latest/tokens"
MYSELF = "/rest/api/2/myself"
LOGIN = "/rest/auth/1/session"


def bearer(raw: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {raw}"}


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def make_token(app_request, user, name: str = "script", days: int | None = 30) -> str:
    return personal_tokens.create(app_request, user, name, days).raw


def browser(testapp, username: str | None = None) -> webtest.TestApp:
    """Another client with its own cookie jar; logged in (REST session) when given a name."""
    client = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    if username is not None:
        client.post_json(LOGIN, {"username": username, "password": f"{username}-password"})
    return client


def assert_invalid_token(response, description: str = "") -> None:
    """RFC 6750 and Seraph: a 401 with the Bearer challenge, never an anonymous answer."""
    assert response.status_int == 401
    challenge = response.headers["WWW-Authenticate"]
    assert challenge.startswith('Bearer realm="appserver", error="invalid_token"'), challenge
    assert description in challenge
    assert response.headers["X-Seraph-LoginReason"] == "AUTHENTICATED_FAILED"
    assert response.headers["X-AUSERNAME"] == "anonymous"
    assert "Set-Cookie" not in response.headers


def session_count(dbsession) -> int:
    return dbsession.scalar(select(func.count()).select_from(UserSession))


# --- the REST resource ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["latest", "1"])
def test_create_answers_201_with_the_raw_token_once(testapp, users, dbsession, clock, version):
    fred = browser(testapp, "fred")
    created = fred.post_json(f"/rest/pat/{version}/tokens", {"name": "CI", "expirationDuration": 90}, status=201)
    body = created.json
    assert set(body) == {"id", "name", "createdAt", "expiringAt", "lastAccessedAt", "rawToken", "userProfileResource"}
    assert body["name"] == "CI" and body["lastAccessedAt"] is None
    assert body["createdAt"] == "2026-01-01T12:00:00.000+0000"
    assert body["expiringAt"] == "2026-04-01T12:00:00.000+0000"  # 90 days later
    assert body["userProfileResource"] == {"username": "fred", "userKey": "fred"}
    raw = body["rawToken"]
    assert raw.startswith(f"apt_{body['id']}_") and len(raw.split("_", 2)[2]) == 43  # 256 bits
    # Never again: not in the list, not in the single token, not in the database.
    listed = fred.get(f"/rest/pat/{version}/tokens").json
    assert [t["id"] for t in listed] == [body["id"]] and "rawToken" not in listed[0]
    assert "rawToken" not in fred.get(f"/rest/pat/{version}/tokens/{body['id']}").json
    row = dbsession.get(PersonalToken, body["id"])
    secret = raw.split("_", 2)[2]
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(dbsession.execute(select(PersonalToken.__table__)).all())


def test_every_token_has_its_own_secret(app_request, users):
    raws = {make_token(app_request, users["fred"], f"t{n}") for n in range(5)}
    assert len({raw.split("_", 2)[2] for raw in raws}) == 5


def test_list_shows_only_the_callers_tokens(testapp, users, app_request):
    make_token(app_request, users["fred"], "fred's")
    make_token(app_request, users["alice"], "alice's")
    assert [t["name"] for t in browser(testapp, "fred").get(TOKENS).json] == ["fred's"]
    assert [t["name"] for t in browser(testapp, "alice").get(TOKENS).json] == ["alice's"]
    testapp.get(TOKENS, status=401)  # anonymous


def test_get_one_is_for_the_owner_or_an_administrator(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    token_id = int(raw.split("_")[1])
    path = f"{TOKENS}/{token_id}"
    assert browser(testapp, "fred").get(path).json["name"] == "script"
    alice = browser(testapp, "alice").get(path, status=404)
    assert alice.json == {"errorMessages": ["Personal access token not found."], "errors": {}}
    for missing in (f"{TOKENS}/999999", f"{TOKENS}/abc", f"{TOKENS}/99999999999", f"{TOKENS}/%C2%B2"):
        browser(testapp, "fred").get(missing, status=404)
    # An administrator reads it: with Basic at once, with a cookie session after WebSudo.
    assert testapp.get(path, headers=basic("admin", "admin-password")).json["userProfileResource"]["username"] == "fred"
    admin = browser(testapp, "admin")
    refused = admin.get(path, status=401)
    assert refused.json == {"message": "This resource requires WebSudo.", "status-code": 401,
                             "errorMessages": ["This resource requires WebSudo."], "errors": {}}
    assert refused.headers["WWW-Authenticate"].startswith("Session ")
    confirm_websudo(admin, "admin-password")
    assert admin.get(path).json["name"] == "script"


def test_delete_answers_204_and_the_token_stops_at_once(testapp, users, app_request, dbsession):
    raw = make_token(app_request, users["fred"])
    token_id = raw.split("_")[1]
    testapp.get(MYSELF, headers=bearer(raw), status=200)
    fred = browser(testapp, "fred")
    assert fred.delete(f"{TOKENS}/{token_id}", status=204).body == b""
    assert_invalid_token(testapp.get(MYSELF, headers=bearer(raw), status=401), "revoked")
    assert fred.get(TOKENS).json == []
    fred.get(f"{TOKENS}/{token_id}", status=404)
    fred.delete(f"{TOKENS}/{token_id}", status=204)  # again, and unknown ids: 204 as in Jira
    fred.delete(f"{TOKENS}/424242", status=204)
    revoked = dbsession.scalars(select(AuthEvent).where(AuthEvent.event == "token.revoked")).all()
    assert len(revoked) == 1  # the second DELETE revoked nothing, and says nothing


def test_the_account_page_says_so_when_there_was_no_token_of_yours_to_revoke(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    alice = browser(testapp, "alice")
    csrf = alice.get("/account").forms["token-form"]["csrf_token"].value
    for token_id in (raw.split("_")[1], "424242"):
        page = alice.post(f"/account/tokens/{token_id}/revoke", {"csrf_token": csrf}, status=303).follow()
        assert "You have no such personal access token: nothing was revoked." in page.text
    testapp.get(MYSELF, headers=bearer(raw), status=200)


def test_delete_of_someone_elses_token_changes_nothing(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    browser(testapp, "alice").delete(f"{TOKENS}/{raw.split('_')[1]}", status=204)
    testapp.get(MYSELF, headers=bearer(raw), status=200)
    admin = browser(testapp, "admin")
    admin.delete(f"{TOKENS}/{raw.split('_')[1]}", status=401)  # an administrator: WebSudo first
    testapp.get(MYSELF, headers=bearer(raw), status=200)
    confirm_websudo(admin, "admin-password")
    admin.delete(f"{TOKENS}/{raw.split('_')[1]}", status=204)
    testapp.get(MYSELF, headers=bearer(raw), status=401)


BAD_REQUESTS = {
    "no name": ({"expirationDuration": 30}, "name"),
    "empty name": ({"name": "  ", "expirationDuration": 30}, "name"),
    # Drawn as nothing (an outside review): a Hangul filler, a zero-width space.
    "invisible name": ({"name": "\u3164", "expirationDuration": 30}, "name"),
    "zero-width name": ({"name": " \u200b ", "expirationDuration": 30}, "name"),
    "braille blank name": ({"name": "\u2800\u2800", "expirationDuration": 30}, "name"),
    "name not a string": ({"name": 7, "expirationDuration": 30}, "name"),
    "name of 41 characters": ({"name": "n" * 41, "expirationDuration": 30}, "name"),
    "control characters": ({"name": "a\x00b", "expirationDuration": 30}, "name"),
    # Reorders the pages around it (an outside review): an override, an isolate.
    "bidi override": ({"name": "a\u202eb", "expirationDuration": 30}, "name"),
    "bidi isolate": ({"name": "a\u2067b", "expirationDuration": 30}, "name"),
    "no expiry": ({"name": "x"}, "expirationDuration"),
    "zero days": ({"name": "x", "expirationDuration": 0}, "expirationDuration"),
    "366 days": ({"name": "x", "expirationDuration": 366}, "expirationDuration"),
    "days as a string": ({"name": "x", "expirationDuration": "30"}, "expirationDuration"),
    "days as a boolean": ({"name": "x", "expirationDuration": True}, "expirationDuration"),
    "days as a fraction": ({"name": "x", "expirationDuration": 1.5}, "expirationDuration"),
}


@pytest.mark.parametrize(("body", "field"), BAD_REQUESTS.values(), ids=BAD_REQUESTS.keys())
def test_jiras_limits_are_400s_in_jiras_error_body(testapp, users, dbsession, body, field):
    response = browser(testapp, "fred").post_json(TOKENS, body, status=400)
    assert set(response.json) == {"errorMessages", "errors"}
    assert list(response.json["errors"]) == [field] and response.json["errorMessages"]
    assert dbsession.scalar(select(func.count()).select_from(PersonalToken)) == 0


def test_the_limits_at_their_edges(testapp, users):
    fred = browser(testapp, "fred")
    fred.post_json(TOKENS, {"name": "n" * 40, "expirationDuration": 365}, status=201)
    fred.post_json(TOKENS, {"name": "x", "expirationDuration": 1}, status=201)
    for n in range(8):
        fred.post_json(TOKENS, {"name": f"t{n}", "expirationDuration": 1}, status=201)
    eleventh = fred.post_json(TOKENS, {"name": "one too many", "expirationDuration": 1}, status=400)
    assert "10 tokens" in eleventh.json["errorMessages"][0]
    fred.delete(f"{TOKENS}/{fred.get(TOKENS).json[0]['id']}", status=204)
    fred.post_json(TOKENS, {"name": "room again", "expirationDuration": 1}, status=201)


def test_expired_tokens_do_not_count_towards_the_limit(make_app, users, clock):
    testapp = make_app(**{"appserver.tokens.max_per_user": "1"})
    fred = browser(testapp, "fred")
    fred.post_json(TOKENS, {"name": "a", "expirationDuration": 1}, status=201)
    fred.post_json(TOKENS, {"name": "b", "expirationDuration": 1}, status=400)
    clock.advance(24 * 3600)
    fred = browser(testapp, "fred")  # the old session has timed out meanwhile
    fred.post_json(TOKENS, {"name": "b", "expirationDuration": 1}, status=201)
    assert [t["name"] for t in fred.get(TOKENS).json] == ["b", "a"]  # the expired one is listed


def test_the_limits_are_settings(make_app, users):
    testapp = make_app(**{
        "appserver.tokens.name_max_length": "5",
        "appserver.tokens.max_expiry_days": "7",
        "appserver.tokens.allow_no_expiry": "true",
    })
    fred = browser(testapp, "fred")
    fred.post_json(TOKENS, {"name": "sixsix", "expirationDuration": 1}, status=400)
    fred.post_json(TOKENS, {"name": "five5", "expirationDuration": 8}, status=400)
    eternal = fred.post_json(TOKENS, {"name": "five5"}, status=201).json
    assert eternal["expiringAt"] is None
    testapp.get(MYSELF, headers=bearer(eternal["rawToken"]), status=200)


def test_bad_settings_stop_start_up(app_settings):
    import appserver
    from appserver.settings import ConfigurationError

    for name, value in (
        ("appserver.tokens.max_per_user", "0"),
        ("appserver.tokens.name_max_length", "256"),
        ("appserver.tokens.allow_no_expiry", "perhaps"),
        ("appserver.websudo.timeout", "0"),
        ("appserver.websudo.enabled", "maybe"),
    ):
        with pytest.raises(ConfigurationError, match=name.replace(".", r"\.")):
            appserver.main({}, **{**app_settings, name: value})


def test_a_token_cannot_create_tokens(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    response = testapp.post_json(TOKENS, {"name": "x", "expirationDuration": 365}, headers=bearer(raw), status=403)
    assert "cannot create tokens" in response.json["errorMessages"][0]
    # ... but it may list them and revoke itself.
    assert len(testapp.get(TOKENS, headers=bearer(raw)).json) == 1
    testapp.delete(f"{TOKENS}/{raw.split('_')[1]}", headers=bearer(raw), status=204)
    testapp.get(TOKENS, headers=bearer(raw), status=401)


def test_a_token_cannot_create_tokens_on_the_account_page_either(testapp, users, app_request):
    """The page's form, with the CSRF token the page gives a token's request: the same 403,
    and no token made (a one-day token must not mint a year-long one)."""
    raw = make_token(app_request, users["fred"], days=1)
    page = testapp.get("/account", headers=bearer(raw))
    form = page.forms["token-form"]
    form["name"], form["expiration_days"] = "minted", "365"
    refused = form.submit(headers=bearer(raw), status=403)
    assert "cannot create tokens" in refused.html.select_one("#token-error").text
    assert [token["name"] for token in testapp.get(TOKENS, headers=bearer(raw)).json] == ["script"]


def test_a_cookie_mints_a_token_only_within_the_websudo_window_of_a_password_check(testapp, users, clock):
    """A stolen session cookie alone made a 365-day token, which outlived the victim's
    log-outs and password change (an outside review). A cookie session's login (or WebSudo
    confirmation, or password change) must have checked the password within the WebSudo
    window; Basic presents it every time."""
    body = {"name": "ci", "expirationDuration": 365}
    fred = browser(testapp, "fred")
    fred.post_json(TOKENS, {**body, "name": "fresh"}, status=201)  # just logged in
    clock.advance(600)  # the window is over; the session is not (idle timeout 30 min)
    refused = fred.post_json(TOKENS, body, status=401)
    assert refused.json["errorMessages"] == [
        "Making a personal access token needs your password within the last 10 minutes: log in again, "
        "send Basic credentials, or confirm your password at /websudo."]
    assert refused.json["errors"] == {} and refused.headers["WWW-Authenticate"].startswith("Session ")
    # "Log out other sessions" rotates the session, asking no password: still refused.
    fred.get("/account").forms["revoke-others-form"].submit(status=303)
    fred.post_json(TOKENS, body, status=401)
    testapp.post_json(TOKENS, body, headers=basic("fred", "fred-password"), status=201)
    confirm_websudo(fred, "fred-password", "/account")
    fred.post_json(TOKENS, {**body, "name": "after websudo"}, status=201)
    assert sorted(t["name"] for t in fred.get(TOKENS).json) == ["after websudo", "ci", "fresh"]


def test_dropping_websudo_ends_the_logins_password_check_for_tokens(testapp, users, clock):
    """A drop ended the elevation but left the login's password check: for the rest of the
    window, a copy of the cookie still minted a token (an outside review)."""
    body = {"name": "ci", "expirationDuration": 30}
    for name, drop in (("fred", "rest"), ("admin", "the admin page's button")):
        person = browser(testapp, name)
        confirm_websudo(person, f"{name}-password", "/account")
        if drop == "rest":
            person.delete("/rest/auth/1/websudo", status=204)
        else:
            page = person.get("/admin/users")
            [f for f in page.forms.values() if f.action == "/websudo/drop"][0].submit(status=303)
        refused = person.post_json(TOKENS, body, status=401)
        assert "needs your password within the last 10 minutes" in refused.json["errorMessages"][0]
        confirm_websudo(person, f"{name}-password", "/account")
        person.post_json(TOKENS, {**body, "name": drop}, status=201)
    # Just logged in, never elevated: the drop still ends the login's check.
    fred = browser(testapp, "fred")
    fred.delete("/rest/auth/1/websudo", status=204)
    fred.post_json(TOKENS, body, status=401)


def test_a_remembered_login_goes_through_the_prompt_to_make_a_token(testapp, users, clock):
    """A remember-me cookie (14 days) logs in without a password: the account page's form
    sends the person to the password prompt, and back to the form."""
    fred = browser(testapp)
    form = fred.get("/login").forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = "fred", "fred-password", True
    form.submit(status=303)
    clock.advance(1801)  # the session idles out; the remember-me cookie starts another
    page = fred.get("/account")
    form = page.forms["token-form"]
    form["name"], form["expiration_days"] = "laptop", "30"
    prompt = form.submit(status=303)
    assert prompt.location.split("?")[0].endswith("/websudo") and "resubmit=1" in prompt.location
    assert fred.get(TOKENS).json == []
    confirm_websudo(fred, "fred-password", "/account")
    form = fred.get("/account").forms["token-form"]
    form["name"], form["expiration_days"] = "laptop", "30"
    made = form.submit(status=200)
    assert made.html.select_one("#new-token") is not None
    assert [t["name"] for t in fred.get(TOKENS).json] == ["laptop"]


def test_log_out_other_sessions_with_a_token_keeps_every_token(testapp, users, app_request):
    """No session asks (Basic or a token): the other sessions end, no token does."""
    raw, other = make_token(app_request, users["fred"]), make_token(app_request, users["fred"], name="other")
    fred = browser(testapp)
    form = fred.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=303)
    for headers in (bearer(raw), basic("fred", "fred-password")):
        testapp.get("/account", headers=headers).forms["revoke-others-form"].submit(headers=headers, status=303)
    fred.get(MYSELF, status=401)  # the browser's session ended
    testapp.get(MYSELF, headers=bearer(raw), status=200)
    testapp.get(MYSELF, headers=bearer(other), status=200)


# --- Bearer authentication ------------------------------------------------------------------


def test_a_valid_token_authenticates_without_session_or_cookie(testapp, users, app_request, dbsession):
    raw = make_token(app_request, users["fred"])
    before = session_count(dbsession)
    for path in (MYSELF, "/rest/api/2/serverInfo", TOKENS, "/", "/account"):
        response = testapp.get(path, headers=bearer(raw))
        assert response.headers["X-AUSERNAME"] == "fred"
        assert response.headers["X-Seraph-LoginReason"] == "OK"
        assert "Set-Cookie" not in response.headers
        assert "Authorization" in response.headers["Vary"] and response.headers["Cache-Control"] == "no-store"
    assert testapp.get(MYSELF, headers={"Authorization": f"bearer   {raw}  "}).json["name"] == "fred"
    assert session_count(dbsession) == before
    assert not testapp.cookies


@pytest.mark.parametrize("path", [MYSELF, "/rest/api/2/serverInfo", "/", "/login"])
def test_unusable_tokens_are_401_everywhere_never_anonymous(testapp, users, app_request, clock, path):
    fred = users["fred"]
    valid = make_token(app_request, fred, "valid")
    expiring = make_token(app_request, fred, "expiring", days=1)
    revoked = make_token(app_request, fred, "revoked")
    personal_tokens.revoke(app_request, app_request.token_store.get(int(revoked.split("_")[1])), fred)
    token_id, secret = valid.split("_")[1], valid.split("_", 2)[2]
    wrong_secret = f"apt_{token_id}_" + ("A" if secret[0] != "A" else "B") + secret[1:]
    clock.advance(24 * 3600)
    cases = {
        "expired": expiring,
        "revoked": revoked,
        "not valid": wrong_secret,
        "not valid ": f"apt_99999_{secret}",  # no such id
        "malformed": "x",
        "malformed ": "",  # "Bearer" and nothing else
        "malformed  ": valid + "x",
        "malformed   ": f"apt_99999999999_{secret}",  # beyond any INTEGER id
    }
    for description, raw in cases.items():
        response = testapp.get(path, headers=bearer(raw), status=401)
        assert_invalid_token(response, description.strip())
        if path.startswith("/rest"):
            assert set(response.json) == {"errorMessages", "errors"}
        else:
            assert response.content_type == "text/html"
    assert testapp.get(path, headers=bearer(valid)).headers["X-AUSERNAME"] == "fred"


def test_a_deactivated_users_tokens_stop_at_once_and_come_back(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    admin = browser(testapp, "admin")
    confirm_websudo(admin, "admin-password")
    page = admin.get("/admin/users")
    action_form(page, users["fred"], "deactivate").submit(status=303)  # via its confirmation
    assert_invalid_token(testapp.get(MYSELF, headers=bearer(raw), status=401), "deactivated")
    page = admin.get("/admin/users")
    [f for f in page.forms.values() if f.action.endswith(f"/{users['fred'].id}/activate")][0].submit(status=303)
    testapp.get(MYSELF, headers=bearer(raw), status=200)


def test_the_authorization_header_beats_any_cookie(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    alice = browser(testapp, "alice")
    assert alice.get(MYSELF).json["name"] == "alice"
    assert alice.get(MYSELF, headers=bearer(raw)).json["name"] == "fred"  # her live cookie loses
    assert_invalid_token(alice.get(MYSELF, headers=bearer("apt_1_" + "A" * 43), status=401))
    assert alice.get(MYSELF).json["name"] == "alice"  # her session is untouched


def test_a_stale_cookie_beside_a_valid_token_is_200_and_deleted(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    fred = browser(testapp, "fred")
    fred.delete(LOGIN, status=204)
    cookie = {"Cookie": "appserver.session=" + "A" * 43}
    response = testapp.get(MYSELF, headers={**bearer(raw), **cookie})
    assert response.json["name"] == "fred"
    assert response.headers["Set-Cookie"].startswith("appserver.session=;")


def test_a_bad_token_never_lets_remember_me_log_in(testapp, users, dbsession):
    browser_ = browser(testapp)
    browser_.post_json(LOGIN + "?os_cookie=true", {"username": "fred", "password": "fred-password", "os_cookie": "true"})
    remember = browser_.cookies["appserver.remember"]
    before = session_count(dbsession)
    response = testapp.get(
        MYSELF, headers={**bearer("apt_1_" + "A" * 43), "Cookie": f"appserver.remember={remember}"}, status=401
    )
    assert_invalid_token(response)
    assert session_count(dbsession) == before


def test_a_token_is_not_a_basic_password(testapp, users, app_request, dbsession):
    raw = make_token(app_request, users["fred"])
    response = testapp.get(MYSELF, headers=basic("fred", raw), status=401)
    assert response.headers["WWW-Authenticate"].startswith("Basic ")
    dbsession.expire_all()
    assert users["fred"].total_failed_logins == 1  # an ordinary failed login


def test_bearer_requests_are_exempt_from_the_xsrf_rule(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    form = {"jql": "project = DEMO", "maxResults": "1"}
    cookie_post = browser(testapp, "fred").post("/rest/api/2/search", form, status=403)
    assert "XSRF check failed" in cookie_post.json["errorMessages"][0]
    token_post = testapp.post("/rest/api/2/search", form, headers=bearer(raw), expect_errors=True)
    assert token_post.status_int != 403 and token_post.headers["X-AUSERNAME"] == "fred"


def test_last_accessed_is_written_at_most_once_per_touch_interval(testapp, users, app_request, clock, dbsession):
    raw = make_token(app_request, users["fred"])
    token_id = int(raw.split("_")[1])

    def last_accessed():
        return testapp.get(f"{TOKENS}/{token_id}", headers=bearer(raw)).json["lastAccessedAt"]

    first = last_accessed()
    assert first == "2026-01-01T12:00:00.000+0000"
    clock.advance(59)
    assert last_accessed() == first
    clock.advance(1)
    assert last_accessed() == "2026-01-01T12:01:00.000+0000"


# --- log out everywhere, password change, audit ---------------------------------------------


def test_log_out_everywhere_revokes_tokens_too(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    admin = browser(testapp, "admin")
    confirm_websudo(admin, "admin-password")
    page = admin.get("/admin/users")
    action_form(page, users["fred"], "revoke-sessions").submit(status=303)
    assert_invalid_token(testapp.get(MYSELF, headers=bearer(raw), status=401), "revoked")


def test_log_out_other_sessions_on_the_account_page_keeps_tokens(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    fred = browser(testapp)
    form = fred.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=303)
    fred.get("/account").forms["revoke-others-form"].submit(status=303)
    testapp.get(MYSELF, headers=bearer(raw), status=200)


def test_a_password_change_keeps_tokens_and_the_page_says_so(testapp, users, app_request):
    raw = make_token(app_request, users["fred"])
    fred = browser(testapp)
    form = fred.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=303)
    page = fred.get("/account")
    assert "does not revoke your tokens" in page.html.select_one("#tokens-password-note").text
    form = page.forms["password-form"]
    form["current_password"], form["new_password"], form["confirm_password"] = (
        "fred-password", "new-fred-password", "new-fred-password")
    form.submit(status=303)
    testapp.get(MYSELF, headers=bearer(raw), status=200)


def test_audit_created_revoked_and_refusals_collapsed(testapp, users, app_request, dbsession, clock):
    fred = browser(testapp, "fred")
    raw = fred.post_json(TOKENS, {"name": "CI", "expirationDuration": 5}, status=201).json["rawToken"]
    fred.delete(f"{TOKENS}/{raw.split('_')[1]}", status=204)
    for _ in range(20):  # a script retrying its revoked token in a loop
        testapp.get(MYSELF, headers=bearer(raw), status=401)
    for _ in range(3):  # garbage from the same address: one row too
        testapp.get(MYSELF, headers=bearer("garbage"), status=401)

    def events(name):
        return dbsession.scalars(select(AuthEvent).where(AuthEvent.event == name).order_by(AuthEvent.id)).all()

    assert [(e.user_id, e.detail) for e in events("token.created")] == [(users["fred"].id, "'CI', expires 2026-01-06")]
    assert [e.user_id for e in events("token.revoked")] == [users["fred"].id]
    refused = events("token.refused")
    assert [(e.user_id, e.detail, e.repeats) for e in refused] == [
        (users["fred"].id, "'CI': revoked", 19), (None, "malformed", 2)
    ]
    assert raw.split("_", 2)[2] not in " ".join(e.detail for e in dbsession.scalars(select(AuthEvent)))
    clock.advance(testapp.app.registry.appserver_settings.audit_collapse_seconds)
    testapp.get(MYSELF, headers=bearer(raw), status=401)
    assert len(events("token.refused")) == 3
    # Another address is another row.
    testapp.get(MYSELF, headers=bearer(raw), extra_environ={"REMOTE_ADDR": "10.0.0.9"}, status=401)
    assert len(events("token.refused")) == 4


# --- the account page and the admin page ----------------------------------------------------


def html_login(testapp, username: str) -> webtest.TestApp:
    client = browser(testapp)
    form = client.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, f"{username}-password"
    form.submit(status=303)
    return client


def test_the_account_page_creates_shows_once_lists_and_revokes(testapp, users, clock):
    fred = html_login(testapp, "fred")
    page = fred.get("/account")
    assert page.html.select_one("#tokens").text.count("No tokens") == 1
    form = page.forms["token-form"]
    form["name"], form["expiration_days"] = "laptop script", "30"
    created = form.submit(status=200)
    assert created.headers["Cache-Control"] == "no-store"
    raw = created.html.select_one("#new-token")["value"]
    assert "shown only this once" in created.html.select_one("#new-token-notice").text
    assert testapp.get(MYSELF, headers=bearer(raw)).json["name"] == "fred"
    clock.advance(120)
    again = fred.get("/account")
    assert again.html.select_one("#new-token") is None and raw not in again.text
    row = again.html.select_one("#tokens tbody tr")
    assert row.select_one(".token-name").text == "laptop script"
    assert "2026-01-01 12:00 UTC" in row.text and "2026-01-31 12:00 UTC" in row.text  # created, used, expires
    revoke = [f for f in again.forms.values() if f.action == f"/account/tokens/{row['data-token-id']}/revoke"][0]
    assert "has been revoked" in revoke.submit(status=303).follow().text
    testapp.get(MYSELF, headers=bearer(raw), status=401)


def test_the_account_page_form_sent_twice_makes_one_token(testapp, users, dbsession):
    """A reload of the page that showed a new token re-posts its form (and a double click
    posts it twice): it made a second token, and showed a second secret. The form carries
    the newest token id it was shown with; a token of that name made since is this form's."""
    fred = html_login(testapp, "fred")
    form = fred.get("/account").forms["token-form"]
    form["name"], form["expiration_days"] = "reloaded", "30"
    assert form.action.endswith("#tokens-card")  # the answer opens at the tokens, not the top
    first = form.submit(status=200)
    assert first.html.select_one("#new-token").has_attr("autofocus")
    again = form.submit(status=409)  # the browser's reload: the same fields
    assert "sent already" in again.html.select_one("#token-error").text
    assert again.html.select_one("#new-token") is None
    tokens = select(func.count()).select_from(PersonalToken).where(PersonalToken.name == "reloaded")
    assert dbsession.scalar(tokens) == 1
    # A new form (the page shown again) makes another, of any name.
    form = fred.get("/account").forms["token-form"]
    form["name"], form["expiration_days"] = "reloaded", "30"
    form.submit(status=200)
    assert dbsession.scalar(tokens) == 2


@pytest.mark.parametrize("path, anchor", [("/account/tokens", "tokens-card"), ("/account/password", "password-card")])
def test_the_address_a_form_leaves_behind_leads_back_to_the_form(testapp, users, path, anchor):
    """Back, a bookmark or Enter in the address bar after a form's answer asked a GET of the
    form's address: a 405 page, a dead end for a person."""
    fred = html_login(testapp, "fred")
    assert fred.get(path, status=303).headers["Location"] == f"http://localhost/account#{anchor}"


def test_the_account_page_refuses_bad_token_requests_with_a_message(testapp, users):
    fred = html_login(testapp, "fred")
    for name, days, says in (("", "30", "Give the token a name"), ("x", "0", "1 to 365"),
                             ("x", "thirty", "whole number"), ("x", "", "without an expiry")):
        form = fred.get("/account").forms["token-form"]
        form["name"], form["expiration_days"] = name, days
        page = form.submit(status=400)
        assert says in page.html.select_one("#token-error").text
    # Someone else's token id: nothing happens, nothing is revealed.
    fred.post("/account/tokens/999/revoke", {"csrf_token": fred.get("/account").forms["token-form"]["csrf_token"].value}, status=303)


def test_the_admin_page_counts_tokens_and_revokes_them_all(testapp, users, app_request):
    raws = [make_token(app_request, users["fred"], f"t{n}") for n in range(3)]
    make_token(app_request, users["alice"])
    admin = html_login(testapp, "admin")
    confirm_websudo(admin, "admin-password")
    page = admin.get("/admin/users")
    counts = {row["data-username"]: row.select_one(".token-count").text for row in page.html.select("#users tbody tr")}
    assert counts == {"admin": "0", "alice": "1", "fred": "3"}
    action_form(page, users["fred"], "revoke-tokens").submit(status=303)  # via its confirmation
    for raw in raws:
        testapp.get(MYSELF, headers=bearer(raw), status=401)
    page = admin.get("/admin/users")
    assert page.html.select_one('tr[data-username="fred"] .token-count').text == "0"
    assert page.html.select_one('tr[data-username="alice"] .token-count').text == "1"


def test_an_administrators_token_cannot_make_accounts(testapp, users, app_request, dbsession):
    """A one-day administrator's token created an administrator account with a password of
    its choosing, which then minted 365-day tokens: a leaked token outlived its revocation
    (an outside review). Creating or activating an account needs a password-proven request."""
    from sqlalchemy import select

    from appserver.models import User

    raw = personal_tokens.create(app_request, users["admin"], "ci", 1).raw
    bearer = {"Authorization": f"Bearer {raw}"}
    page = testapp.get("/admin/users", headers=bearer, status=200)  # reading is allowed
    form = page.forms["create-user-form"]
    form["username"], form["password"], form["display_name"], form["admin"] = "mallory", "mallory-pass", "M", True
    refused = form.submit(headers=bearer, status=403)
    assert "A personal access token cannot create accounts" in refused.html.select_one("#admin-error").text
    assert dbsession.scalar(select(User).where(User.username_key == "mallory")) is None
    users["alice"].active = False
    dbsession.flush()
    from .test_admin import action_form

    form = action_form(testapp.get("/admin/users", headers=bearer), users["alice"], "activate")
    form.submit(headers=bearer, status=403)
    dbsession.expire_all()
    assert users["alice"].active is False
    # Basic proves the password: allowed, as before.
    basic = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-password").decode()}
    page = testapp.get("/admin/users", headers=basic)
    form = page.forms["create-user-form"]
    form["username"], form["password"], form["display_name"] = "mallory", "mallory-pass", "M"
    form.submit(headers=basic, status=303)


def test_a_purged_tokens_id_is_never_used_again(testapp, app_request, users, dbsession):
    """SQLite gave a new row the largest id plus one: after a purge of the newest tokens,
    a new token took a purged one's id, and a refusal of the old token went to the audit
    trail of the new one's owner (an outside review; migration 0009)."""
    from sqlalchemy import delete

    made = personal_tokens.create(app_request, users["fred"], "old", 5)
    old_raw, old_id = made.raw, made.token.id
    dbsession.execute(delete(PersonalToken).where(PersonalToken.id == old_id))  # purged
    newer = personal_tokens.create(app_request, users["alice"], "new", 5)
    dbsession.flush()
    assert newer.token.id > old_id
    testapp.get("/rest/api/2/myself", headers=bearer(old_raw), status=401)
    refusals = dbsession.scalars(select(AuthEvent).where(AuthEvent.event == "token.refused")).all()
    assert [event.user_id for event in refusals] == [None]
