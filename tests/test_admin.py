"""Administration pages: ACL-protected, list, create, (de)activate, unlock, revoke."""
from __future__ import annotations

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
    for form in page.forms.values():
        if form.action == f"/admin/users/{user.id}/{action}":
            return form
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


def test_deactivate_and_activate(testapp, users):
    admin, fred = client(testapp, "admin"), client(testapp, "fred")
    action_form(admin.get("/admin/users"), users["fred"], "deactivate").submit().follow()
    fred.get("/rest/api/2/myself", status=401)
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=401)
    action_form(admin.get("/admin/users"), users["fred"], "activate").submit().follow()
    testapp.post_json("/rest/auth/1/session", {"username": "fred", "password": "fred-password"}, status=200)


def test_admin_cannot_deactivate_themselves(testapp, users):
    admin = client(testapp, "admin")
    page = action_form(admin.get("/admin/users"), users["admin"], "deactivate").submit(status=400)
    assert "cannot deactivate your own account" in page.text


def test_revoke_a_users_sessions(testapp, users):
    admin, fred = client(testapp, "admin"), client(testapp, "fred")
    action_form(admin.get("/admin/users"), users["fred"], "revoke-sessions").submit().follow()
    fred.get("/rest/api/2/myself", status=401)
    admin.get("/rest/api/2/myself", status=200)
