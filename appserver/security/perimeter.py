"""The two outermost tweens: security headers on every response, and the Host allow-list.

Order (outermost first)::

    security_headers_tween   every response, whoever made it: views, exception views,
                             static files, the tweens below, the debug toolbar
    allowed_host_tween       400 for a Host not in appserver.allowed_hosts, before anything
                             reads a credential or builds a URL (above the debug toolbar, so
                             a rebound DNS name cannot reach it either)
    (debug toolbar, pyramid_tm, the seed's tweens: see tweens.py)
"""
from __future__ import annotations

import logging
from collections.abc import Callable

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from ..errors import error_response
from ..hosts import host_checker
from .responses import ANONYMOUS

Handler = Callable[[Request], Response]

log = logging.getLogger(__name__)

#: Pages: only this site's own scripts, styles, images and form targets; never framed.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
#: JSON, CSS and anything else that is not a page: nothing to load, never framed.
RESOURCE_POLICY = "default-src 'none'; frame-ancestors 'none'"
#: The debug toolbar's own pages use inline script; it exists in development only.
TOOLBAR_PREFIX = "/_debug_toolbar/"
HSTS = "max-age=31536000"

COMMON_HEADERS = (
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "same-origin"),
)


#: The same, keyed by the lower-case name the check compares.
_COMMON_BY_NAME = tuple((name.lower(), (name, value)) for name, value in COMMON_HEADERS)


def security_headers(request: Request, response: Response, *, https: bool) -> None:
    """Add the headers a view did not set itself. (One pass over the response's headers:
    ``headers.setdefault`` scans them all again for every header, on every response.)"""
    headerlist = response.headerlist
    present = {name.lower(): value for name, value in headerlist}
    for lowered, header in _COMMON_BY_NAME:
        if lowered not in present:
            headerlist.append(header)
    # The raw WSGI path: the prefix is ASCII (and a path that is not UTF-8 gets a 400 page).
    if "content-security-policy" not in present and not request.environ.get(
        "PATH_INFO", ""
    ).startswith(TOOLBAR_PREFIX):
        media_type = present.get("content-type", "").split(";", 1)[0].strip().lower()
        policy = PAGE_POLICY if media_type == "text/html" else RESOURCE_POLICY
        headerlist.append(("Content-Security-Policy", policy))
    if https and "strict-transport-security" not in present:
        # Only where cookies are Secure (production behind TLS): on plain http in
        # development it would lock the browser out of http://localhost for a year.
        headerlist.append(("Strict-Transport-Security", HSTS))


def security_headers_tween_factory(handler: Handler, registry: Registry) -> Handler:
    https = registry.appserver_settings.secure_cookies

    def security_headers_tween(request: Request) -> Response:
        response = handler(request)
        security_headers(request, response, https=https)
        return response

    return security_headers_tween


def allowed_host_tween_factory(handler: Handler, registry: Registry) -> Handler:
    allowed = host_checker(registry.appserver_settings.allowed_hosts)

    def allowed_host_tween(request: Request) -> Response:
        # WebOb's host: the Host header (set from X-Forwarded-Host by waitress only for a
        # trusted proxy), else SERVER_NAME:SERVER_PORT. Every absolute URL is built from it.
        # The header read from the environ first: what request.host returns, without two calls.
        if allowed(request.environ.get("HTTP_HOST") or request.host):
            return handler(request)
        # The error page shows who is logged in: answer as anonymous without reading any
        # credential (reading one may rotate a remember-me token the client would never get).
        registry.security_policy.unauthenticated(request)
        if not request.environ.get("HTTP_HOST"):  # HTTP/1.0, or a hand-made request
            return error_response(
                request, 400, ["This request names no host: send a Host header with the server's address."],
                errors={"Host": "missing"}, headers=[ANONYMOUS],
            )
        # The operator's side of the page's "use the server's own address": which name was
        # refused, and where the names are set (a proxy or a new DNS name, often).
        log.warning("refused Host %r: not in appserver.allowed_hosts (APPSERVER_ALLOWED_HOSTS)",
                    request.environ["HTTP_HOST"][:200])
        return error_response(
            request,
            400,
            ["This server does not answer to the host name in this request. "
             "Use the server's own address."],
            errors={"Host": "not one of the names this server answers to"},
            headers=[ANONYMOUS],
        )

    return allowed_host_tween
