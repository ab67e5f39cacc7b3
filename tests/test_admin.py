"""Administration pages: ACL-protected, list, create, (de)activate, unlock, revoke."""
from __future__ import annotations

import pytest

import webtest

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
        if form.action == url:
            return form
    for link in page.html.select(f'a[href="{url}"]'):
        return page.goto(link["href"]).forms["confirm-form"]
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
