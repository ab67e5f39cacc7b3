"""A new user's first hour (issue 10, item 14): 404s that say where to go (to a program under
/rest, to a person elsewhere), ``/admin``, a second step before an administrator takes
something away from someone, and the demo users on a development server's login page.
"""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from plaster import get_loader

from appserver.settings import ConfigurationError, parse_settings

from .support import ROOT, base_settings
from .test_admin import client


# --- 404s ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/rest/api/2/dashboard", "/rest/api/latest/nothing/here", "/rest"])
def test_a_rest_404_speaks_to_programs(testapp, path):
    response = testapp.get(path, status=404)
    assert response.content_type == "application/json"
    assert response.json == {
        "errorMessages": [f"No REST resource at {path}; see /rest/api/2/serverInfo"],
        "errors": {},
    }


def test_an_html_404_names_the_address_and_where_to_go(testapp, users):
    page = testapp.get("/no/such/page", status=404)
    assert "There is no page at /no/such/page." in page.html.select_one("main").text
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Home": "/", "Issues": "/issues", "Log in": "/login"}
    fred = client(testapp, "fred")
    actions = {a.text: a["href"] for a in fred.get("/nowhere", status=404).html.select("main .actions a")}
    assert actions == {"Home": "/", "Issues": "/issues", "Your account": "/account"}


def test_a_very_long_unknown_path_is_cut_short_in_the_answer(testapp):
    response = testapp.get("/rest/" + "x" * 5000, status=404)
    assert len(response.json["errorMessages"][0]) < 300


# --- /admin ----------------------------------------------------------------------------------


def test_admin_leads_to_the_users_page(testapp, users):
    admin = client(testapp, "admin")
    assert admin.get("/admin", status=303).headers["Location"] == "http://localhost/admin/users"
    anonymous = urlsplit(testapp.get("/admin", status=303).headers["Location"])
    assert anonymous.path == "/login" and parse_qs(anonymous.query) == {"os_destination": ["/admin"]}
    client(testapp, "fred").get("/admin", status=403)


# --- A second step before taking something away ----------------------------------------------


#: action -> (what the confirmation page says, fred's session afterwards)
ASKS = {
    "deactivate": ("fred is logged out everywhere and cannot log in", 401),
    "revoke-sessions": ("Every session and remembered login of fred ends now", 401),
    "revoke-tokens": ("Every personal access token of fred stops working now", 200),
}


@pytest.mark.parametrize("action", list(ASKS))
def test_a_destructive_admin_action_asks_first(testapp, users, action):
    admin, fred = client(testapp, "admin"), client(testapp, "fred")
    url = f"/admin/users/{users['fred'].id}/{action}"
    users_page = admin.get("/admin/users")
    # The users page links to a confirmation page; it holds no form that acts at once.
    assert not [f for f in users_page.forms.values() if f.action == url]
    confirm = users_page.click(href=url + "$")
    says, afterwards = ASKS[action]
    assert says in confirm.html.select_one("#confirm").text
    assert confirm.html.select_one("#confirm-cancel")["href"] == "/admin/users"
    # A post without the second step (an old page, a script) only asks again.
    token = confirm.forms["confirm-form"]["csrf_token"].value
    again = admin.post(url, {"csrf_token": token}, status=200)
    assert again.html.select_one("#confirm-form") is not None
    fred.get("/rest/api/2/myself", status=200)
    # Confirmed: done.
    done = confirm.forms["confirm-form"].submit(status=303)
    assert done.headers["Location"] == "http://localhost/admin/users?notice=user-updated"
    fred.get("/rest/api/2/myself", status=afterwards)


def test_actions_that_take_nothing_away_do_not_ask(testapp, users, dbsession):
    users["alice"].active = False
    dbsession.flush()
    admin = client(testapp, "admin")
    page = admin.get("/admin/users")
    for action in ("unlock", "activate"):
        url = f"/admin/users/{users['alice'].id}/{action}"
        (form,) = [f for f in page.forms.values() if f.action == url]
        assert form.submit(status=303).headers["Location"].endswith("notice=user-updated")
        admin.get(url, status=405)  # no page to confirm
    assert admin.get("/admin/users").html.select_one('tr[data-username="alice"]').text.count("Active")


@pytest.mark.parametrize("user_id", ["999999", "2147483648", "9" * 30])
def test_a_confirmation_page_for_a_missing_account_leads_back(testapp, users, user_id):
    admin = client(testapp, "admin")
    assert admin.get(f"/admin/users/{user_id}/deactivate", status=303).headers["Location"] == (
        "http://localhost/admin/users"
    )


# --- Demo users on a development login page --------------------------------------------------


def test_a_development_login_page_lists_the_demo_users_that_exist(make_app, users, dbsession):
    app = make_app(**{"appserver.login.show_demo_users": "true"})
    rows = app.get("/login").html.select("#demo-users tbody tr")
    assert [[td.text for td in row.select("td")] for row in rows] == [
        ["admin", "admin-password", "administrator"],
        ["fred", "fred-password", "user"],
        ["alice", "alice-password", "user"],
    ]
    # The list is the truth: the password it shows logs in ...
    form = app.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "alice", "alice-password"
    form.submit(status=303)
    # ... and an account that cannot log in is not offered.
    users["fred"].active = False
    dbsession.flush()
    names = [row["data-username"] for row in app.get("/login").html.select("#demo-users tbody tr")]
    assert names == ["admin", "alice"]


def test_the_login_page_lists_no_one_by_default(testapp, users):
    assert testapp.get("/login").html.select_one("#demo-users") is None


def test_listing_demo_users_is_refused_with_secure_cookies():
    settings = base_settings(
        "sqlite://", **{"appserver.login.show_demo_users": "true", "appserver.session.secure": "true"}
    )
    with pytest.raises(ConfigurationError, match="appserver.login.show_demo_users: only for development"):
        parse_settings(settings)


def test_development_ini_lists_them_and_production_ini_does_not():
    development = get_loader(str(ROOT / "development.ini"), protocols=["wsgi"]).get_settings("app:main")
    production = get_loader(str(ROOT / "production.ini"), protocols=["wsgi"]).get_settings("app:main")
    assert development["appserver.login.show_demo_users"] == "true"
    assert "appserver.login.show_demo_users" not in production


# --- the development server beside the command line -------------------------------------------


def test_the_development_server_sees_and_allows_writes_by_another_process(live_server_factory, live_database_url):
    """``make run`` serves with the debug toolbar, which keeps every query's result of its
    last requests. A SELECT whose result the code never read (the token limit's row lock)
    was one of them: on SQLite it held a read snapshot on its pooled connection, so after
    the command line wrote (``unlock``, ``revoke-sessions``) that connection could neither
    write (503s until a restart) nor see the revocation (a revoked session still 200)."""
    import requests
    from sqlalchemy import update

    from appserver.models import User, UserSession, get_engine

    server = live_server_factory(**{"pyramid.includes": "pyramid_debugtoolbar",
                                    "debugtoolbar.hosts": "127.0.0.1"})
    with requests.Session() as fred:
        login = fred.post(server.url + "/rest/auth/1/session", timeout=10,
                          json={"username": "fred", "password": "fred-password"})
        assert login.status_code == 200
        for number in range(4):  # on every pooled connection of the server's four threads
            made = fred.post(server.url + "/rest/pat/latest/tokens", timeout=10,
                             json={"name": f"script {number}", "expirationDuration": 30})
            assert made.status_code == 201, made.text
        cli = get_engine({"sqlalchemy.url": live_database_url})
        try:
            with cli.begin() as connection:  # what `appserver CONFIG unlock alice` writes
                connection.execute(update(User).where(User.username == "alice").values(current_failed_logins=0))
            for _ in range(8):
                alice = requests.post(server.url + "/rest/auth/1/session", timeout=10,
                                      json={"username": "alice", "password": "alice-password"})
                assert alice.status_code == 200, alice.text
            with cli.begin() as connection:  # `appserver CONFIG revoke-sessions fred`
                connection.execute(update(UserSession).values(revoked_at=server.clock.now()))
            for _ in range(8):
                assert fred.get(server.url + "/rest/api/2/myself", timeout=10).status_code == 401
        finally:
            cli.dispose()


# --- methods a URL does not take ---------------------------------------------------------------


@pytest.mark.parametrize("method, path, allow", [
    ("PATCH", "/login", "GET, HEAD, POST"),
    ("DELETE", "/issues", "GET, HEAD"),
    ("TRACE", "/", "GET, HEAD"),
    ("OPTIONS", "/issues/DEMO-1", "GET, HEAD"),
    ("GET", "/logout", "POST"),
    ("DELETE", "/rest/api/2/myself", "GET, HEAD"),
    ("PATCH", "/rest/auth/1/session", "DELETE, GET, HEAD, POST"),
])
def test_a_method_a_url_does_not_take_is_a_405_that_names_the_ones_it_does(testapp, users, method, path, allow):
    """Not a page served as if it were a GET (TRACE /), nor "this form has expired" (the
    CSRF check of a view that was never meant for the method)."""
    response = testapp.request(path, method=method, status=405)
    assert response.headers["Allow"] == allow
    assert f"use {' or '.join(allow.split(', '))}" in response.text
    if path == "/logout":
        assert "use the Log out button" in response.text
