"""The answers of authentication: 401 with a challenge, 403 when denied, 503 when the
database is down. Every 401 carries a ``WWW-Authenticate`` (RFC 7235); only a client that
used Basic or asked for it gets a Basic challenge, so a browser never pops a password dialog
for a page's own script."""
from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlencode

from pyramid.request import Request
from pyramid.response import Response

from ..errors import error_response
from .basic import basic_challenge
from .redirects import safe_destination

RETRY_AFTER_SECONDS = 30
#: On an answer made before anyone could be authenticated (an unreadable request, a refused
#: Host, the database down): every response names its user (docs/rest-api.md).
ANONYMOUS = ("X-AUSERNAME", "anonymous")


def session_challenge(request: Request) -> str:
    settings = request.appserver_settings
    login = request.route_url("rest.session", version="1")
    realm = settings.basic_realm.replace('"', "")
    return f'Session realm="{realm}", login-url="{login}"'


def challenge_for(request: Request, *, basic: bool) -> str:
    if basic:
        return basic_challenge(request.appserver_settings.basic_realm)
    return session_challenge(request)


def without_os_authtype(request: Request) -> str:
    """This page's path and query without the ``os_authType`` demand."""
    kept = [(name, value) for name, value in request.GET.items() if name != "os_authType"]
    # A link on this site's page: "//evil.example/" as a path would lead elsewhere.
    return safe_destination(request.path + (f"?{urlencode(kept)}" if kept else ""))


def unauthorized_response(
    request: Request,
    message: str,
    *,
    basic: bool,
    headers: Iterable[tuple[str, str]] = (),
    without_demand: bool = False,
) -> Response:
    """The page offers to log in and come back. ``without_demand``: the URL demanded Basic
    (``os_authType=basic``), which no login meets: back from the login page, the same 401
    again; it returns to the page without the demand instead."""
    destination = without_os_authtype(request) if without_demand else request.path_qs
    login = request.route_path("login", _query={"os_destination": destination})
    return error_response(
        request,
        401,
        [message],
        headers=[("WWW-Authenticate", challenge_for(request, basic=basic)), *headers],
        actions=[("Log in", login)],
        login_destination=destination,
    )


def stale_session_response(request: Request, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """Rule 1's answer under /rest: the session the cookie names is no longer valid."""
    login = request.route_url("rest.session", version="1")
    return unauthorized_response(
        request,
        f"Your session has expired or is no longer valid. Log in again (POST {login}) or send "
        "HTTP Basic credentials.",
        basic=False,
        headers=headers,
    )


def denied_response(request: Request, retry_after: int) -> Response:
    login_url = request.route_url("login")
    return error_response(
        request,
        403,
        [
            "Login denied: too many failed login attempts for this account. "
            f"Try again in {retry_after} seconds."
        ],
        headers=[
            ("X-Seraph-LoginReason", "AUTHENTICATION_DENIED"),
            ("X-Authentication-Denied-Reason", f"TOO_MANY_FAILED_LOGINS; login-url={login_url}"),
            ("Retry-After", str(retry_after)),
        ],
        actions=[("Log in", request.route_path("login"))],
    )


def _database_trouble(request: Request, message: str, action: tuple[str, str]) -> Response:
    return error_response(
        request,
        503,
        [message],
        headers=[("Retry-After", str(RETRY_AFTER_SECONDS)), ANONYMOUS],
        actions=[action],
    )


def unavailable_response(request: Request) -> Response:
    from .policy import presents_credentials  # the policy answers with these responses

    if presents_credentials(request):
        message = "The service cannot check credentials right now: its database is unavailable. Try again shortly."
    else:  # nothing was sent to check
        message = "The service cannot answer right now: its database is unavailable. Try again shortly."
    return _database_trouble(request, message, ("Try again", request.path_qs))


def commit_in_doubt_response(request: Request) -> Response:
    """The answer to a request whose COMMIT got no answer (``models.commit_in_doubt``): it is
    not run again, and the client is told the truth, that its change may have been saved."""
    return _database_trouble(
        request,
        "The connection to the database was lost while your change was being saved, so it may "
        "or may not have been saved. Check whether it was before you make it again.",
        ("Home", request.route_path("home")),
    )
