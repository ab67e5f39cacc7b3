"""``/rest/auth/1/session``: log in, who am I, log out (Jira's session resource)."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.request import Request
from pyramid.view import view_config, view_defaults

from ...errors import error_response
from ...security.login import Outcome, check_password, log_in, log_out
from ...security.responses import denied_response, stale_session_response, unauthorized_response
from ...security.sessions import CookieState
from . import BadJSON, bad_json_response, json_object, login_info, missing_strings
from .links import user_url


@view_defaults(route_name="rest.session", renderer="json", require_csrf=False)
class SessionResource:
    def __init__(self, request: Request) -> None:
        self.request = request

    @view_config(request_method="POST")
    def create(self):
        request = self.request
        try:
            body = json_object(request)
        except BadJSON as error:
            return bad_json_response(request, error)
        problems = missing_strings(body, "username", "password")
        if problems:
            return error_response(request, 400, ["Send a username and a password."], errors=problems)
        username, password = body["username"], body["password"]
        attempt = check_password(request, username, password, channel="rest")
        if attempt.outcome is Outcome.DENIED:
            request.login_reason = Outcome.DENIED.value
            return denied_response(request, attempt.retry_after or 1)
        persistent = str(body.get("os_cookie", request.GET.get("os_cookie", ""))).lower() == "true"
        # log_in is None when the password changed or the account was deactivated since the
        # check: as failed as a wrong password.
        headers = log_in(request, attempt.user, persistent=persistent, channel="rest") if attempt.ok else None
        if headers is None:
            request.login_reason = Outcome.FAILED.value
            return error_response(
                request,
                401,
                ["Login failed"],
                headers=[("WWW-Authenticate", "JIRA REST POST")],
            )
        request.response.headerlist.extend(headers)
        settings = request.appserver_settings
        return {
            "session": {"name": settings.session_cookie, "value": request.authentication.issued.token},
            "loginInfo": login_info(attempt.user),
        }

    @view_config(request_method="GET")
    def current(self):
        request = self.request
        user = request.user
        if user is None:
            return unauthorized_response(request, "You are not logged in.", basic=False)
        return {
            "self": user_url(request, user),
            "name": user.username,
            "loginInfo": login_info(user),
        }

    @view_config(request_method="DELETE")
    def delete(self):
        request = self.request
        identity = request.authentication.identity
        if identity is None:
            # The 401 names nobody, as every 401 does.
            request.registry.security_policy.refuse(request)
            return unauthorized_response(request, "You are not logged in.", basic=False)
        if identity.session is None and request.authentication.cookie is not CookieState.LIVE:
            # Basic or a token: logged in, with no session to end ("destroying the existing
            # session, if any", Jira says): done. A 401 would read as wrong credentials. A
            # live session cookie sent beside them is the session to end (log_out does).
            return HTTPNoContent()
        logged_out = log_out(request)
        if logged_out.ended_meanwhile:  # the cookies are deleted all the same
            return stale_session_response(request, logged_out.headers)
        return HTTPNoContent(headers=logged_out.headers)
