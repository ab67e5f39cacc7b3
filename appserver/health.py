"""``GET /status``, Jira Data Center's health check, for the proxy, load balancers and operators.

``200 {"state": "RUNNING"}`` when this process can serve (its database answers), ``503
{"state": "ERROR"}`` otherwise. It is answered by a tween above pyramid_tm and authentication:
no transaction, no credential read (a session cookie, Basic credentials or ``os_authType``
are ignored), no cookie set, one ``SELECT 1`` on a pooled connection. A load balancer may
call it every second on every process.
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from pyramid.config import Configurator
from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response
from sqlalchemy import text

from .errors import jira_error_body
from .models import DATABASE_UNAVAILABLE
from .rendering import json_response

log = logging.getLogger(__name__)

Handler = Callable[[Request], Response]

STATUS_PATH = "/status"
RETRY_AFTER_SECONDS = 5


def database_reachable(registry: Registry) -> bool:
    try:
        with registry.dbengine.connect() as connection:
            connection.scalar(text("SELECT 1"))
    except DATABASE_UNAVAILABLE as error:
        log.warning("status: database unreachable (%s)", type(error).__name__)
        return False
    return True


def status_response(request: Request) -> Response:
    if request.method not in ("GET", "HEAD"):
        response = json_response(jira_error_body([f"{request.method} is not allowed here: use GET."]), 405)
        response.allow = ("GET", "HEAD")
    elif database_reachable(request.registry):
        response = json_response({"state": "RUNNING"})
    else:
        response = json_response({"state": "ERROR"}, 503)
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response.cache_control = "no-store"
    return response


def status_tween_factory(handler: Handler, registry: Registry) -> Handler:
    def status_tween(request: Request) -> Response:
        # The raw WSGI path: request.path_info would raise for a path that is not UTF-8, which
        # the tweens below this one answer with a 400.
        if request.environ.get("PATH_INFO") == STATUS_PATH:
            return status_response(request)
        return handler(request)

    return status_tween


def includeme(config: Configurator) -> None:
    config.add_tween("appserver.health.status_tween_factory", over="pyramid_tm.tm_tween_factory")
