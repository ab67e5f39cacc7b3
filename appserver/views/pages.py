"""HTML pages: home, log in, log out."""
from __future__ import annotations

from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from pyramid.csrf import check_csrf_token
from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from sqlalchemy import select

from ..demo import DEMO_USERS
from ..models import User, canonical_username
from ..security.csrf import TOKEN_FIELD, TOKEN_HEADER
from ..security.login import Outcome, check_password, log_in, log_out
from ..security.redirects import DEFAULT_DESTINATION, safe_destination
from .notices import notice_for

#: ``/login?expired=1``: the login page says the session expired (set by the redirect from
#: a login-only page, which has just deleted the stale cookie).
SESSION_EXPIRED_PARAM = "expired"
#: ``/login?unsent=1``: a form was sent without a login; the page says it was not carried out
#: (the login leads back to the form's page, never to the POST-only address it was sent to).
FORM_UNSENT_PARAM = "unsent"


@view_config(
    route_name="home",
    request_method="GET",
    renderer="appserver:templates/home.jinja2",
    permission=NO_PERMISSION_REQUIRED,
)
def home(request: Request) -> dict:
    return {"notice": notice_for(request)}


@view_config(
    route_name="login",
    request_method=("GET", "POST"),
    renderer="appserver:templates/login.jinja2",
    permission=NO_PERMISSION_REQUIRED,
)
def login(request: Request):
    destination = login_destination(request, request.params.get("os_destination"))
    form = {
        "username": "",
        "remember": False,
        "error": None,
        "retry_after": None,
        "destination": destination,
        "session_expired": request.GET.get(SESSION_EXPIRED_PARAM) == "1",
        "form_unsent": request.GET.get(FORM_UNSENT_PARAM) == "1",
        # Read when the page renders: after the password check, whose unit of work must come
        # before the request's own transaction.
        "demo_users": lambda: demo_users(request),
    }
    if request.method != "POST":
        return form
    username = request.POST.get("os_username", "")
    password = request.POST.get("os_password", "")
    form["username"] = username[:255]
    form["remember"] = request.POST.get("os_cookie") == "true"  # ticked again on the error page
    if not username or not password:
        request.response.status = 400
        form["error"] = "Enter your username and password."
        return form
    attempt = check_password(request, username, password, channel="form")
    request.login_reason = attempt.outcome.value
    if attempt.ok:
        persistent = request.POST.get("os_cookie") == "true"
        headers = log_in(request, attempt.user, persistent=persistent, channel="form")
        if headers is not None:
            return HTTPSeeOther(destination, headers=headers)
        request.login_reason = Outcome.FAILED.value  # changed since the check: try the new one
    elif attempt.outcome is Outcome.DENIED:
        request.response.status = 403
        request.response.headers["Retry-After"] = str(attempt.retry_after)
        form["retry_after"] = attempt.retry_after
        form["error"] = (
            "Too many failed login attempts for this account. "
            f"Wait {attempt.retry_after} seconds, then try again."
        )
        return form
    request.response.status = 200
    form["error"] = "Sorry, your username and password are incorrect. Please try again."
    if attempt.retry_after:  # this failure started the cool-down
        form["retry_after"] = attempt.retry_after
        form["error"] = (
            "Sorry, your username and password are incorrect. That was too many failed login "
            f"attempts for this account: wait {attempt.retry_after} seconds, then try again."
        )
    return form


#: Links nest at most this deep (``/login?os_destination=/login?os_destination=...``).
NESTED_LOGINS = 3


def login_destination(request: Request, candidate: str | None) -> str:
    """Where a login goes: ``os_destination`` when it is a page of this site, never the
    login page itself (from there a login would land on "you are already logged in"). A
    destination that is the login page goes where that one was going: home, or the
    ``os_destination`` of its own (an old link the header's Log in button nested)."""
    login_path = request.route_path("login")
    destination = safe_destination(candidate)
    for _ in range(NESTED_LOGINS):
        parts = urlsplit(destination)
        if unquote(parts.path) != login_path:
            return _without_basic_demand(destination)
        inner = parse_qs(parts.query).get("os_destination")
        destination = safe_destination(inner[0] if inner else None)
    return DEFAULT_DESTINATION


def _without_basic_demand(destination: str) -> str:
    """``destination`` without an ``os_authType=basic`` demand, which no login by form or
    cookie meets: the page would answer the same 401 (and a browser its password dialog)
    right after the login. A form's page found by its ``Referer`` can carry one too."""
    parts = urlsplit(destination)
    if "os_authType" not in parts.query:
        return destination
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs
            if not (name == "os_authType" and value.strip().lower() == "basic")]
    if len(kept) == len(pairs):
        return destination
    return safe_destination(urlunsplit(parts._replace(query=urlencode(kept))))


def demo_users(request: Request) -> list[tuple[str, str, str]]:
    """(username, password, role) of the seeded demo accounts that exist and are active, for
    the login page of a development server (``appserver.login.show_demo_users``, refused
    with secure cookies); nothing anywhere else."""
    if not request.appserver_settings.show_demo_users:
        return []
    keys = {canonical_username(name): (name, password, admin) for name, password, _, _, admin in DEMO_USERS}
    found = request.dbsession.scalars(
        select(User.username_key).where(User.username_key.in_(keys), User.active.is_(True))
    )
    present = set(found)
    return [
        (name, password, "administrator" if admin else "user")
        for key, (name, password, admin) in keys.items()
        if key in present
    ]


@view_config(route_name="logout", request_method="POST")
def logout(request: Request):
    headers = log_out(request).headers
    return HTTPSeeOther(request.route_url("home", _query={"notice": "logged-out"}), headers=headers)


@view_config(route_name="logout", request_method="POST", is_authenticated=False, require_csrf=False)
def logout_again(request: Request):
    """Nothing left to end. When the browser presented its session, now dead (the second
    click of a double click, another tab's Log out, a session that expired meanwhile), the
    form's CSRF token was bound to that session: the check answered "this form has expired"
    where the first click landed on the home page; it lands there too, and the dead cookie
    is deleted as on any page. A POST that presented no session (a cross-site form, whose
    cookies SameSite kept back) is checked as every form is, and says so if it fails."""
    if request.authentication.rotated_to is not None:
        # The cookies from before another tab's rotation (a WebSudo confirmation, a
        # password change): the session it started is this browser's, and is logged out.
        return logout(request)
    if not request.authentication.stale_cookie:
        check_csrf_token(request, token=TOKEN_FIELD, header=TOKEN_HEADER)
    return HTTPSeeOther(request.route_url("home", _query={"notice": "logged-out"}))
