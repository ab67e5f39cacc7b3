"""A new user's first hour (issue 10, item 14): 404s that say where to go (to a program under
/rest, to a person elsewhere), ``/admin``, a second step before an administrator takes
something away from someone, and the demo users on a development server's login page.
"""
from __future__ import annotations

import base64
import re
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import webtest
from plaster import get_loader
from sqlalchemy import event
from sqlalchemy.exc import OperationalError

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
    # The users page's button opens a confirmation page (a GET); no form there acts at once.
    [opens] = [f for f in users_page.forms.values() if f.action == url]
    assert opens.method.lower() == "get" and not opens.fields.get("csrf_token")
    confirm = opens.submit()
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
    users["alice"].current_failed_logins = 1  # so that there is something to unlock
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
    """The users page, saying why, as a 404 (as its POST answers; it redirected without a
    word)."""
    admin = client(testapp, "admin")
    page = admin.get(f"/admin/users/{user_id}/deactivate", status=404)
    assert page.html.select_one("#admin-error").text == "That account no longer exists."
    assert page.html.select_one("#users") is not None


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


def test_the_login_page_says_what_to_do_about_a_forgotten_password(testapp, users):
    """There is no self-service reset: the page says who can help (an administrator's Set
    password, or the command line's set-password)."""
    help_text = testapp.get("/login").html.select_one("#login-help").text
    assert help_text == "Forgot your password? An administrator can set a new one for you."


def test_listing_demo_users_is_refused_with_secure_cookies():
    settings = base_settings(
        "sqlite://", **{"appserver.login.show_demo_users": "true", "appserver.session.secure": "true"}
    )
    with pytest.raises(ConfigurationError, match="appserver.login.show_demo_users: only for development"):
        parse_settings(settings)


def test_the_debug_toolbar_is_refused_with_secure_cookies():
    """An outside review added it to a copy of production.ini: `check` said ready, and its
    pages (recent requests' cookies, a debugger that runs code) answered local users."""
    settings = base_settings("sqlite://", **{"appserver.session.secure": "true",
                                             "pyramid.includes": "\npyramid_tm\npyramid_debugtoolbar"})
    with pytest.raises(ConfigurationError, match="pyramid.includes: pyramid_debugtoolbar is only for development"):
        parse_settings(settings)
    parse_settings({**settings, "appserver.session.secure": "false"})  # development.ini's case


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


# --- A new user's review: the login page, wording, accessibility ------------------------------


def login_page_form(app, path="/login"):
    return app.get(path).forms["login-form"]


def test_the_login_pages_own_log_in_link_does_not_nest_it(testapp, users):
    """The header's "Log in" on /login led to /login?os_destination=%2Flogin, one level
    deeper with each click, and a login from there landed on /login ("already logged in")."""
    link = testapp.get("/login").html.select_one("#login-link")
    assert link is None or link["href"] == "/login"
    link = testapp.get("/login?os_destination=%2Fissues&expired=1").html.select_one("#login-link")
    assert link is None or parse_qs(urlsplit(link["href"]).query) == {"os_destination": ["/issues"]}
    # Elsewhere it still leads back to the page it was clicked on.
    link = testapp.get("/issues").html.select_one("#login-link")
    assert parse_qs(urlsplit(link["href"]).query) == {"os_destination": ["/issues"]}


@pytest.mark.parametrize("destination, lands_on", [
    ("/login", "/"),
    ("/login?os_destination=%2Flogin", "/"),
    ("/login?expired=1", "/"),
    ("/./login", "/"),
    ("/login?os_destination=%2Fissues", "/issues"),  # an old nested link: where it meant
    ("/issues?jql=key%20%3D%20DEMO-1", "/issues?jql=key%20%3D%20DEMO-1"),
])
def test_a_login_never_lands_on_the_login_page(testapp, users, destination, lands_on):
    form = login_page_form(testapp, "/login?" + urlencode({"os_destination": destination}))
    form["os_username"], form["os_password"] = "fred", "fred-password"
    assert form.submit(status=303).headers["Location"] == "http://localhost" + lands_on


def test_a_failed_login_focuses_the_password_and_keeps_remember_me(testapp, users):
    page = testapp.get("/login")
    assert page.html.select_one("#os_username").has_attr("autofocus")
    assert not page.html.select_one("#os_password").has_attr("autofocus")
    assert not page.html.select_one("#os_cookie").has_attr("checked")
    form = page.forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = "fred", "wrong", True
    again = form.submit(status=200)
    assert again.html.select_one("#login-error") is not None
    assert again.html.select_one("#os_username")["value"] == "fred"
    assert not again.html.select_one("#os_username").has_attr("autofocus")
    assert again.html.select_one("#os_password").has_attr("autofocus")
    assert again.html.select_one("#os_cookie").has_attr("checked")
    # Not ticked: stays unticked; no username: the username is where to type.
    form = again.forms["login-form"]
    form["os_username"], form["os_password"], form["os_cookie"] = "", "", False
    empty = form.submit(status=400)
    assert not empty.html.select_one("#os_cookie").has_attr("checked")
    assert empty.html.select_one("#os_username").has_attr("autofocus")
    assert not empty.html.select_one("#os_password").has_attr("autofocus")


def test_the_demo_users_table_scrolls_inside_its_card(make_app, users):
    app = make_app(**{"appserver.login.show_demo_users": "true"})
    table = app.get("/login").html.select_one("#demo-users table")
    assert "table-scroll" in table.parent.get("class", [])


def stylesheet_rules(testapp) -> dict[str, str]:
    """selector -> declarations of the stylesheet's top-level rules (one selector a key)."""
    css = re.sub(r"/\*.*?\*/", "", testapp.get("/static/style.css").text, flags=re.S)
    css = css.split("@media", 1)[0]
    rules: dict[str, str] = {}
    for selectors, body in re.findall(r"([^{}]+)\{([^{}]*)\}", css):
        for selector in selectors.split(","):
            rules[" ".join(selector.split())] = rules.get(" ".join(selector.split()), "") + body
    return rules


def test_number_inputs_are_styled_like_the_other_inputs(testapp):
    rules = stylesheet_rules(testapp)
    assert "font: inherit" in rules["input[type=password]"]
    assert rules["input[type=number]"] == rules["input[type=password]"]


def test_the_home_page_sentence_ends_without_a_stray_space(testapp, users):
    text = " ".join(client(testapp, "fred").get("/").html.select_one("main p").text.split())
    assert text == "You are logged in as fred."
    text = " ".join(client(testapp, "admin").get("/").html.select_one("main p").text.split())
    assert text == "You are logged in as admin (administrator)."


def test_the_websudo_page_title_and_heading_agree(testapp, users):
    admin = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    form = admin.get("/login").forms["login-form"]
    form["os_username"], form["os_password"] = "admin", "admin-password"
    form.submit(status=303)
    page = admin.get("/websudo?os_destination=%2Fadmin%2Fusers")
    assert page.html.select_one("#websudo-form") is not None
    assert page.html.title.text == page.html.select_one("h1").text + " · appserver"


# --- Error pages that fit who is asking -------------------------------------------------------


def database_down(dbengine):
    def refuse(conn, cursor, statement, parameters, context, executemany):
        raise OperationalError(statement, {}, Exception("connection refused"))

    event.listen(dbengine, "before_cursor_execute", refuse)
    return lambda: event.remove(dbengine, "before_cursor_execute", refuse)


def basic_auth(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def error_messages(page) -> list[str]:
    return [p.text for p in page.html.select("main .error-message")]


def test_a_503_page_speaks_of_credentials_only_to_who_sent_some(testapp, users, dbengine):
    fred = client(testapp, "fred")
    anonymous = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    restore = database_down(dbengine)
    try:
        page = anonymous.get("/issues", status=503)
        logged_in = fred.get("/issues", status=503)
        json = anonymous.get("/rest/api/2/search", status=503)
        basic = anonymous.get("/", headers=basic_auth("fred", "fred-password"), status=503)
    finally:
        restore()
    cannot_answer = "The service cannot answer right now: its database is unavailable. Try again shortly."
    assert error_messages(page) == [cannot_answer]
    assert [a.text for a in page.html.select("main .actions a")] == ["Try again"]
    cannot_check = "The service cannot check credentials right now: its database is unavailable. Try again shortly."
    assert error_messages(logged_in) == error_messages(basic) == [cannot_check]
    assert json.json == {"errorMessages": [cannot_answer], "errors": {}}  # programs read the same


def test_a_401_page_says_log_in_again_only_to_who_had_logged_in(testapp, users, clock):
    page = testapp.get("/?os_authType=cookie", status=401)
    (message,) = error_messages(page)
    assert message == "os_authType=cookie: a valid session cookie is required. Log in first."
    # A session that ended: "again" is right.
    fred = client(testapp, "fred")
    clock.advance(1800 + 1)  # past the idle timeout
    (message,) = error_messages(fred.get("/?os_authType=cookie", status=401))
    assert message == "os_authType=cookie: a valid session cookie is required. Log in again."
    # Programs read the same words.
    anonymous = webtest.TestApp(testapp.app, extra_environ=testapp.extra_environ)
    assert anonymous.get("/rest/api/2/myself?os_authType=cookie", status=401).json["errorMessages"] == [
        "os_authType=cookie: a valid session cookie is required. Log in first."
    ]


def test_a_csrf_refusal_of_the_login_form_leads_back_to_it(testapp, users):
    credentials = {"os_username": "fred", "os_password": "fred-password", "os_destination": "/issues"}
    page = testapp.post("/login", credentials, status=400)
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Home": "/", "Back to the form": "/login?os_destination=%2Fissues"}
    page = testapp.post("/login", {**credentials, "os_destination": "https://evil.example/"}, status=400)
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Home": "/", "Back to the form": "/login"}
    # A destination that is the login page itself (the header's Log in link, nested) is
    # unnested, as the login view does: the form it leads to goes where that one was going.
    nested = "/login?os_destination=%2Fissues"
    page = testapp.post("/login", {**credentials, "os_destination": nested}, status=400)
    actions = {a.text: a["href"] for a in page.html.select("main .actions a")}
    assert actions == {"Home": "/", "Back to the form": "/login?os_destination=%2Fissues"}
    # Another form's refusal offers no login form; programs get the JSON as before.
    fred = client(testapp, "fred")
    page = fred.post("/account/password", {"csrf_token": "forged"}, status=400)
    assert {a.text for a in page.html.select("main .actions a")} == {"Home"}
    json = testapp.post("/login", credentials, headers={"Accept": "application/json"}, status=400)
    assert json.json == {"errorMessages": [
        "This form has expired or was sent from another site. Go back, reload the page and try again."
    ], "errors": {}}


# --- Accessibility ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/", "/login", "/issues", "/no/such/page"])
def test_a_skip_link_comes_first_and_leads_to_the_main_content(testapp, users, path):
    page = testapp.get(path, status="*")
    first = page.html.body.find(["a", "button", "input", "select", "textarea"])
    assert first.text == "Skip to content" and first["href"] == "#content"
    assert page.html.select_one("main")["id"] == "content"
    assert "skip-link" in first["class"]
    rules = stylesheet_rules(testapp)
    assert any(selector.startswith(".skip-link:focus") for selector in rules)


@pytest.mark.parametrize("who, path, current", [
    (None, "/", "Home"),
    (None, "/issues", "Issues"),
    (None, "/login", None),
    ("fred", "/account", "Account"),
    ("admin", "/admin/users", "Admin"),
])
def test_the_navigation_marks_the_current_page(testapp, users, who, path, current):
    app = client(testapp, who) if who else testapp
    links = app.get(path).html.select("header nav a")
    marked = [a.text for a in links if a.get("aria-current") == "page"]
    assert marked == ([current] if current else [])


# --- The command line and the development server's log ----------------------------------------


def test_appserver_help_is_plain_text(capsys):
    from appserver.scripts.cli import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "``" not in out
    description = " ".join(out.split("positional arguments")[0].split("\n", 1)[1].split())
    assert description == "Set up the database and manage accounts, sessions and personal access tokens."


def test_the_development_server_does_not_log_alembics_plugin_setup():
    import configparser

    parser = configparser.ConfigParser()
    parser.read(ROOT / "development.ini")
    levels = {
        parser[f"logger_{key.strip()}"].get("qualname", "root" if key.strip() == "root" else ""): parser[
            f"logger_{key.strip()}"]["level"]
        for key in parser["loggers"]["keys"].split(",")
    }
    # The most specific configured logger above alembic.runtime.plugins decides.
    name = "alembic.runtime.plugins"
    while name not in levels:
        name = name.rpartition(".")[0] or "root"
    assert levels[name] in ("WARN", "WARNING", "ERROR")
