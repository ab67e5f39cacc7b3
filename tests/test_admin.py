"""Administration pages: ACL-protected, list, create, (de)activate, unlock, revoke."""
from __future__ import annotations

import base64

import pytest
import webtest
from sqlalchemy import select

from appserver.models import AuthEvent

from .support import confirm_websudo


def client(testapp, username):
    c = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = c.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = username, f"{username}-password"
    form.submit(status=303)
    if username == "admin":  # administrator work needs the password confirmed (WebSudo)
        confirm_websudo(c, f"{username}-password")
    return c


def action_form(page, user, action):
    """The form that does ``action``: on the users page, or, for an action that takes
    something away, on the confirmation page its link leads to."""
    url = f"/admin/users/{user.id}/{action}"
    for form in page.forms.values():
        if form.action == url and form.method.lower() == "post":
            return form
    for form in page.forms.values():
        if form.action == url:  # a button that opens the confirmation page
            return form.submit().forms["confirm-form"]
    raise AssertionError(f"no {action} form for {user.username}")


def test_anonymous_gets_the_login_page_non_admin_gets_403(testapp, users):
    assert testapp.get("/admin/users", status=303).location.startswith("http://localhost/login?")
    page = client(testapp, "fred").get("/admin/users", status=403)
    assert "You do not have permission" in page.text
    rest = client(testapp, "fred").post(f"/admin/users/{users['alice'].id}/deactivate", status=403)
    assert rest.status_int == 403


def test_admin_lists_users_with_lock_state_and_counts(testapp, users):
    for _ in range(3):
        testapp.post_json("/rest/auth/1/session", {"username": "alice", "password": "x"}, status=401)
    page = client(testapp, "admin").get("/admin/users")
    row = page.html.select_one('tr[data-username="alice"]')
    assert "Locked for 60 s" in row.text and "3 / 3" in row.text
    assert page.html.select_one("#admin-link") is not None


def test_admin_creates_a_user_who_can_log_in(testapp, users):
    admin = client(testapp, "admin")
    form = admin.get("/admin/users").forms["create-user-form"]
    form["username"], form["password"], form["display_name"] = "carol", "carol-password", "Carol"
    assert "The account has been created" in form.submit().follow().text
    client(testapp, "carol").get("/rest/api/2/myself", status=200)
    again = admin.get("/admin/users").forms["create-user-form"]
    again["username"], again["password"] = "CAROL", "carol-password"
    assert "already exists" in again.submit(status=400).text


@pytest.mark.parametrize(("field", "value", "says"), [
    ("email", "carol at example", "Enter an email address like name@example.com"),
    ("email", "c" * 250 + "@example.com", "at most 255 characters"),
    ("display_name", "C" * 256, "Display names are limited to 255 characters."),
    ("display_name", "Carol\x00", "Display names cannot contain control characters."),
    ("display_name", "Carol\nCarol", "Display names cannot contain control characters."),
    ("display_name", "Carol \u202eloraC", "cannot contain bidirectional override or isolate characters"),
    ("display_name", "Carol \u2066x\u2069", "cannot contain bidirectional override or isolate characters"),
])
def test_admin_form_refuses_a_bad_profile_and_keeps_what_was_typed(testapp, users, field, value, says):
    """Refused, never cut to the column's size: what the admin typed is still in the form."""
    admin = client(testapp, "admin")
    form = admin.get("/admin/users").forms["create-user-form"]
    form["username"], form["password"], form[field] = "carol", "carol-password", value
    page = form.submit(status=400)
    assert says in page.text
    assert page.forms["create-user-form"][field].value == value
    testapp.post_json("/rest/auth/1/session", {"username": "carol", "password": "carol-password"}, status=401)


def test_real_names_with_joiners_and_no_break_spaces_are_accepted(testapp, users, dbsession):
    """str.isprintable refuses format characters and no-break spaces, which real names hold
    (a zero-width non-joiner in Persian): only controls and line separators are refused."""
    admin = client(testapp, "admin")
    form = admin.get("/admin/users").forms["create-user-form"]
    name = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645\u00a0Jr."
    form["username"], form["password"], form["display_name"] = "sara", "sara-password", name
    form.submit(status=303)
    assert client(testapp, "sara").get("/rest/api/2/myself").json["displayName"] == name


def test_a_display_name_drawn_as_nothing_is_none_and_the_username_stands_in(testapp, users):
    """A Hangul filler and a zero-width space look like no name at all (an outside review):
    taken as no display name, the username is shown instead."""
    admin = client(testapp, "admin")
    form = admin.get("/admin/users").forms["create-user-form"]
    form["username"], form["password"], form["display_name"] = "sara", "sara-password", "\u3164\u200b"
    form.submit(status=303)
    assert client(testapp, "sara").get("/rest/api/2/myself").json["displayName"] == "sara"


def test_deactivate_and_activate(testapp, users):
    admin, fred = client(testapp, "admin"), client(testapp, "fred")
    action_form(admin.get("/admin/users"), users["fred"], "deactivate").submit().follow()
    fred.get("/rest/api/2/myself", status=401)
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=401)
    action_form(admin.get("/admin/users"), users["fred"], "activate").submit().follow()
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=200)


def test_admin_cannot_deactivate_themselves(testapp, users):
    """Not offered on their own row, and said before the confirmation page, not after it
    (the page used to say "admin is logged out everywhere and cannot log in")."""
    admin = client(testapp, "admin")
    page = admin.get("/admin/users")
    with pytest.raises(AssertionError, match="no deactivate form"):
        action_form(page, users["admin"], "deactivate")
    action_form(page, users["fred"], "deactivate")  # others' rows have it
    refused = admin.get(f"/admin/users/{users['admin'].id}/deactivate", status=400)
    assert "cannot deactivate your own account" in refused.text
    assert refused.html.select_one("#confirm-form") is None
    # The POST, sent by hand, is refused as before.
    csrf = page.forms["create-user-form"]["csrf_token"].value
    admin.post(f"/admin/users/{users['admin'].id}/deactivate", {"csrf_token": csrf, "confirm": "yes"}, status=400)


def test_unlock_is_offered_where_there_is_something_to_unlock(testapp, users, dbsession):
    from appserver.models import User

    dbsession.get(User, users["alice"].id).current_failed_logins = 2
    dbsession.flush()
    page = client(testapp, "admin").get("/admin/users")
    action_form(page, users["alice"], "unlock")
    with pytest.raises(AssertionError, match="no unlock form"):
        action_form(page, users["fred"], "unlock")


def test_revoke_a_users_sessions(testapp, users):
    admin, fred = client(testapp, "admin"), client(testapp, "fred")
    action_form(admin.get("/admin/users"), users["fred"], "revoke-sessions").submit().follow()
    fred.get("/rest/api/2/myself", status=401)
    admin.get("/rest/api/2/myself", status=200)


# --- Set a password (a person who forgot theirs) ----------------------------------------------


def set_password_form(admin, user):
    page = admin.get("/admin/users")
    [opens] = [form for form in page.forms.values() if form.action == f"/admin/users/{user.id}/password"]
    return opens.submit().forms["set-password-form"]


def test_an_administrator_sets_a_forgotten_password(testapp, users, dbsession):
    fred = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    fred_login = fred.get("/login").forms["login-form"]
    fred_login["os_username"], fred_login["os_password"], fred_login["os_cookie"] = "fred", "fred-password", True
    fred_login.submit(status=303)
    admin = client(testapp, "admin")
    form = set_password_form(admin, users["fred"])
    form["new_password"] = form["confirm_password"] = "given-by-admin-1"
    done = form.submit(status=303).follow()
    assert "The password has been set" in done.html.select_one("#notice").text
    # fred's browser is logged out, remembered login included; the new password logs in.
    fred.get("/rest/api/2/myself", status=401)
    fred.get("/rest/api/2/myself", status=401)
    basic = lambda password: {"Authorization": "Basic " + base64.b64encode(f"fred:{password}".encode()).decode()}
    testapp.get("/rest/api/2/myself", headers=basic("fred-password"), status=401)
    assert testapp.get("/rest/api/2/myself", headers=basic("given-by-admin-1")).json["name"] == "fred"
    [event] = dbsession.scalars(select(AuthEvent).where(AuthEvent.event == "password.changed"))
    assert event.user_id == users["fred"].id and event.detail == "1 session(s) revoked by admin"


def test_setting_a_password_checks_it_like_every_other_password(testapp, users):
    admin = client(testapp, "admin")
    form = set_password_form(admin, users["fred"])
    form["new_password"], form["confirm_password"] = "given-by-admin-1", "given-by-admin-2"
    page = form.submit(status=400)
    assert page.html.select_one("#set-password-error").text == "The two new passwords do not match."
    form = page.forms["set-password-form"]
    form["new_password"] = form["confirm_password"] = "short"
    assert "at least 12 characters" in form.submit(status=400).html.select_one("#set-password-error").text


def test_your_own_password_is_set_on_the_account_page(testapp, users):
    """It asks for the current password there; the users page offers no link on your row."""
    admin = client(testapp, "admin")
    own = f"/admin/users/{users['admin'].id}/password"
    assert not [form for form in admin.get("/admin/users").forms.values() if form.action == own]
    answer = admin.get(f"/admin/users/{users['admin'].id}/password", status=303)
    assert answer.location == "http://localhost/account#password-card"


def test_setting_a_password_needs_an_administrator_an_account_and_websudo(testapp, users):
    missing = client(testapp, "admin").get("/admin/users/999999/password", status=404)
    assert "no longer exists" in missing.html.select_one("#admin-error").text
    fred = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = fred.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "fred", "fred-password"
    form.submit(status=303)
    fred.get(f"/admin/users/{users['alice'].id}/password", status=403)
    unelevated = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = unelevated.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "admin", "admin-password"
    form.submit(status=303)
    assert "/websudo" in unelevated.get(f"/admin/users/{users['fred'].id}/password", status=303).location


def test_rest_sets_a_password_as_jira_does(testapp, users, app_request):
    from appserver.security import personal_tokens

    admin = {"Authorization": "Basic " + base64.b64encode(b"admin:admin-password").decode()}
    url = "/rest/api/2/user/password"
    testapp.put_json(url + "?username=fred", {"password": "given-by-rest-1"}, headers=admin, status=204)
    fred_basic = {"Authorization": "Basic " + base64.b64encode(b"fred:given-by-rest-1").decode()}
    assert testapp.get("/rest/api/2/myself", headers=fred_basic).json["name"] == "fred"
    missing = testapp.put_json(url + "?username=nobody", {"password": "x" * 10}, headers=admin, status=404)
    assert missing.json == {"errorMessages": ["The user named 'nobody' does not exist"], "errors": {}}
    short = testapp.put_json(url + "?username=fred", {"password": "short"}, headers=admin, status=400)
    assert "at least 12 characters" in short.json["errors"]["password"]
    unnamed = testapp.put_json(url, {"password": "x" * 10}, headers=admin, status=400)
    assert unnamed.json["errors"] == {"username": "username is required"}
    empty = testapp.put_json(url + "?username=fred", {}, headers=admin, status=400)
    assert empty.json["errors"] == {"password": "password is required"}
    # Not an administrator: 403; yourself: the current password is needed, as myself/password.
    testapp.put_json(url + "?username=alice", {"password": "x" * 10}, headers=fred_basic, status=403)
    nobody = testapp.put_json(url + "?username=nobody", {"password": "x" * 10}, headers=fred_basic, status=403)
    assert nobody.json["errorMessages"] == ["Only an administrator can set another user's password."]
    own = testapp.put_json(url + "?username=fred", {"password": "given-by-rest-2"}, headers=fred_basic, status=400)
    assert own.json["errors"] == {"currentPassword": "currentPassword is required"}
    testapp.put_json(url + "?username=fred", {"password": "given-by-rest-2", "currentPassword": "given-by-rest-1"},
                     headers=fred_basic, status=204)
    # A token never sets a password; a cookie session needs WebSudo first.
    raw = personal_tokens.create(app_request, users["admin"], "ci", 1).raw
    refused = testapp.put_json(url + "?username=alice", {"password": "x" * 10},
                               headers={"Authorization": f"Bearer {raw}"}, status=403)
    assert refused.json["errorMessages"] == ["A personal access token cannot set passwords: log in with your password."]
    session = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    session.post_json("/rest/auth/1/session", {"username": "admin", "password": "admin-password"})
    asked = session.put_json(url + "?username=alice", {"password": "x" * 10}, status=401)
    assert asked.json["message"] == "This resource requires WebSudo."


def test_setting_a_forgotten_password_ends_the_lock_out(testapp, users, dbsession):
    """Whoever forgot a password has usually locked the account guessing it; the new one was
    refused for the rest of the cool-down (an outside review)."""
    for attempt in range(3):
        testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": f"guess-{attempt}"}, status=401)
    admin = client(testapp, "admin")
    form = set_password_form(admin, users["fred"])
    form["new_password"] = form["confirm_password"] = "given-by-admin-1"
    assert "lock-out" in form.submit(status=303).follow().html.select_one("#notice").text
    fred = {"Authorization": "Basic " + base64.b64encode(b"fred:given-by-admin-1").decode()}
    assert testapp.get("/rest/api/2/myself", headers=fred).json["name"] == "fred"
    names = [e.event for e in dbsession.scalars(select(AuthEvent).where(AuthEvent.user_id == users["fred"].id))]
    assert "password.changed" in names and "account.unlocked" in names


def test_a_token_cannot_unlock_an_account(testapp, users, app_request, dbsession):
    """Unlocking after every third guess would let a token's holder guess any password, an
    administrator's too, and keep what it found after the token is revoked."""
    from appserver.security import personal_tokens

    for attempt in range(3):
        testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": f"guess-{attempt}"}, status=401)
    raw = personal_tokens.create(app_request, users["admin"], "ci", 1).raw
    bearer = {"Authorization": f"Bearer {raw}"}
    form = action_form(testapp.get("/admin/users", headers=bearer), users["fred"], "unlock")
    refused = form.submit(headers=bearer, status=403)
    assert "A personal access token cannot unlock accounts" in refused.html.select_one("#admin-error").text
    dbsession.expire_all()
    assert users["fred"].locked_until is not None
