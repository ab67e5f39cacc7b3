"""``/rest/api/2``: server information and users."""
from __future__ import annotations

from pyramid.request import Request
from pyramid.view import view_config

from ... import __name__ as package_name
from ...errors import error_response
from ...security.login import find_user
from ...rendering import jira_time
from . import user_json

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


@view_config(route_name="rest.server_info", request_method="GET", renderer="json", permission="view")
def server_info(request: Request) -> dict:
    return {
        "baseUrl": request.application_url,
        "version": VERSION,
        "versionNumbers": _version_numbers(VERSION),
        "deploymentType": "Server",
        "buildNumber": 1,
        "serverTime": jira_time(request.now),
        "scmInfo": "",
        "serverTitle": "appserver",
    }


@view_config(route_name="rest.myself", request_method="GET", renderer="json", permission="account")
def myself(request: Request) -> dict:
    return user_json(request, request.user)


@view_config(route_name="rest.user", request_method="GET", renderer="json", permission="account")
def user(request: Request):
    username = request.GET.get("username") or request.GET.get("key") or ""
    found = find_user(request, username)
    if found is None:
        return error_response(
            request, 404, [f"The user named '{username[:255]}' does not exist"], errors={}
        )
    return user_json(request, found)
