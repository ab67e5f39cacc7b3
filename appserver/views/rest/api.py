"""``/rest/api/2``: server information, users, and changing passwords."""
from __future__ import annotations

from datetime import datetime

from pyramid.httpexceptions import HTTPNoContent
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from ... import __name__ as package_name
from ...errors import error_response
from ...rendering import jira_time
from ...security import accounts, websudo
from ...security.accounts import AccountError, TooManyAttempts
from ...models import canonical_username
from ...security.login import find_user
from ...security.responses import denied_response
from ..query import RepeatedParameter, repeated_response, single
from . import BadJSON, bad_json_response, json_object, missing_strings, user_json

try:
    from importlib.metadata import version as _distribution_version

    VERSION = _distribution_version(package_name)
except Exception:  # running from a source tree that was never installed
    VERSION = "0.0.0"


def _version_numbers(version: str) -> list[int]:
    numbers = []
    for part in version.split(".")[:3]:
        digits = "".join(ch for ch in part if ch.isdigit())
        numbers.append(int(digits or 0))
    return numbers + [0] * (3 - len(numbers))


VERSION_NUMBERS = tuple(_version_numbers(VERSION))


@view_config(
    route_name="rest.server_info",
    request_method="GET",
    renderer="json",
    permission=NO_PERMISSION_REQUIRED,
)
def server_info(request: Request) -> dict:
    return server_info_body(request.application_url, request.now)


def server_info_body(base_url: str, now: datetime) -> dict:
    """Jira's serverInfo fields (the benchmark's bare JSON view answers the same)."""
    return {
        "baseUrl": base_url,
        "version": VERSION,
        "versionNumbers": VERSION_NUMBERS,
        "deploymentType": "Server",
        "buildNumber": 1,
        "serverTime": jira_time(now),
        "scmInfo": "",
        "serverTitle": "appserver",
    }


@view_config(route_name="rest.myself", request_method="GET", renderer="json", permission="account")
def myself(request: Request) -> dict:
    return user_json(request, request.account)  # shown, not changed: no ORM object needed


@view_config(
    route_name="rest.myself.password",
    request_method="PUT",
    permission="account",
    # A JSON PUT cannot be sent cross-site without a CORS preflight, which this server never
    # grants: the browser itself is the CSRF protection here, as for Jira.
    require_csrf=False,
)
def change_my_password(request: Request):
    """Jira's ``PUT /rest/api/2/myself/password`` {"password", "currentPassword"} -> 204."""
    try:
        body = json_object(request)
    except BadJSON as error:
        return bad_json_response(request, error)
    problems = missing_strings(body, "currentPassword", "password")
    if problems:
        return error_response(request, 400, ["Send the current password and the new one."], errors=problems)
    try:
        accounts.change_own_password(request, request.user, body["currentPassword"], body["password"])
    except TooManyAttempts as error:
        return denied_response(request, error.retry_after)
    except AccountError as error:
        status = 403 if error.field == "currentPassword" else 400
        return error_response(request, status, [], errors={error.field or "password": str(error)})
    # A cookie client stays logged in under a new token; a Basic client has no session.
    return HTTPNoContent(headers=accounts.rotated_session(request, password_checked=True))


def _username_parameter(request: Request) -> str:
    """Jira's ``?username=`` (or ``?key=``, which is the username here), each at most once,
    and not both with different names (neither guess is safe)."""
    username, key = single(request.GET, "username"), single(request.GET, "key")
    if username and key and username != key:
        raise RepeatedParameter("username", 2, "Give username or key, not both: they name different users.")
    return username or key


@view_config(route_name="rest.user.password", request_method="PUT", permission="account", require_csrf=False)
def change_user_password(request: Request):
    """Jira's ``PUT /rest/api/2/user/password?username=`` {"password"} -> 204: an
    administrator sets someone's password (they are logged out everywhere); the caller's own
    needs ``currentPassword`` too, as ``myself/password`` does."""
    try:
        username = _username_parameter(request)
    except RepeatedParameter as error:
        return repeated_response(request, error)
    if not username:
        return error_response(request, 400, ["Name the account: ?username=NAME."],
                              errors={"username": "username is required"})
    own = canonical_username(username) == request.user.username_key
    if not own and not request.user.admin:  # before the look-up: no name is confirmed or denied
        return error_response(request, 403, ["Only an administrator can set another user's password."])
    found = find_user(request, username)
    if found is None:
        return error_response(request, 404, [f"The user named '{username[:255]}' does not exist"], errors={})
    if found.id == request.user.id:
        return change_my_password(request)
    refused = websudo.require(request)
    if refused is not None:
        return refused
    try:
        body = json_object(request)
    except BadJSON as error:
        return bad_json_response(request, error)
    problems = missing_strings(body, "password")
    if problems:
        return error_response(request, 400, ["Send the new password."], errors=problems)
    try:
        accounts.refuse_tokens(request, "set passwords")
        accounts.reset_password(request, found, body["password"], by=request.user)
    except AccountError as error:
        if error.field is None:  # not about the password sent (a token asked)
            return error_response(request, error.status, [str(error)])
        return error_response(request, error.status, [], errors={error.field: str(error)})
    return HTTPNoContent()


@view_config(route_name="rest.user", request_method="GET", renderer="json", permission="account")
def user(request: Request):
    try:
        username = _username_parameter(request)
    except RepeatedParameter as error:
        return repeated_response(request, error)
    found = find_user(request, username)
    if found is None:
        return error_response(
            request, 404, [f"The user named '{username[:255]}' does not exist"], errors={}
        )
    return user_json(request, found)
