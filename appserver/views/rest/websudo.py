"""``DELETE /rest/auth/1/websudo``: drop this session's WebSudo elevation (Jira's only method
on that resource)."""
from __future__ import annotations

from pyramid.httpexceptions import HTTPNoContent
from pyramid.request import Request
from pyramid.view import view_config

from ...security import websudo


@view_config(route_name="rest.websudo", request_method="DELETE", permission="account", require_csrf=False)
def drop_websudo(request: Request):
    websudo.drop(request)
    return HTTPNoContent()
