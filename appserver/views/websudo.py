"""The WebSudo password prompt: a cookie session confirms its password before admin work
(an administrator) or before making a personal access token (anyone, when the login's own
password check is older than the window), then returns to the page it was on."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPSeeOther
from pyramid.request import Request
from pyramid.view import view_config

from ..security import websudo
from ..security.login import Outcome
from ..security.redirects import safe_destination
from .pages import SESSION_EXPIRED_PARAM


def _destination(request: Request) -> str:
    """Where the prompt returns; without one, the administrator's users page, or anyone
    else's account page (where tokens are made: the users page would be a 403)."""
    default = "admin.users" if request.user.admin else "account"
    return safe_destination(request.params.get("os_destination"), request.route_path(default))


@view_config(route_name="websudo", request_method=("GET", "POST"),
             renderer="appserver:templates/websudo.jinja2", permission="account")
def prompt(request: Request):
    destination = _destination(request)
    form = {
        "destination": destination,
        "resubmit": request.params.get("resubmit") == "1",
        "error": None,
        "window": websudo.window_text(request.appserver_settings.websudo_timeout),
    }
    if request.method != "POST":
        if websudo.remaining(request) is not None or websudo.require(request) is None:
            return HTTPSeeOther(destination)  # nothing to confirm (elevated, exempt or off)
        return form
    password = request.POST.get("websudo_password", "")
    if not password:  # nothing was tried: no hash, no failure counted (as the login page)
        request.response.status = 400
        form["error"] = "Enter your password."
        return form
    confirmation = websudo.confirm(request, password)
    attempt = confirmation.attempt
    if confirmation.ended:
        # The cookie is dead now: the destination would send the person to the login page
        # anyway, without saying why.
        return HTTPSeeOther(request.route_url(
            "login", _query={"os_destination": destination, SESSION_EXPIRED_PARAM: "1"}))
    if attempt.ok:
        response = HTTPSeeOther(destination, headers=confirmation.headers)
        response.headers[websudo.HEADER[0]] = websudo.HEADER[1]
        return response
    if attempt.outcome is Outcome.DENIED:
        request.response.status = 403
        request.response.headers["Retry-After"] = str(attempt.retry_after)
        form["error"] = (
            "Too many failed password attempts for this account. "
            f"Wait {attempt.retry_after} seconds, then try again."
        )
    elif attempt.retry_after:
        form["error"] = (
            "That password is not correct, and that was too many failed attempts for this "
            f"account: wait {attempt.retry_after} seconds, then try again."
        )
    else:
        form["error"] = "That password is not correct. Try again."
    return form


@view_config(route_name="websudo.drop", request_method="POST", permission="account")
def drop(request: Request):
    websudo.drop(request)
    return HTTPSeeOther(request.route_url("home", _query={"notice": "websudo-dropped"}))
