"""Exception views: every error is Jira-shaped JSON under /rest and a helpful page elsewhere."""
from __future__ import annotations

import logging

from pyramid.csrf import BadCSRFToken
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import HTTPException, HTTPSeeOther
from pyramid.request import Request
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config

from ..errors import error_response, is_rest
from ..models import DATABASE_UNAVAILABLE, retry_transient
from ..security.responses import unauthorized_response, unavailable_response

log = logging.getLogger(__name__)


@forbidden_view_config()
def forbidden(exc, request: Request):
    if request.user is None:
        if is_rest(request):
            return unauthorized_response(
                request,
                "You are not authenticated. Authentication required to perform this operation.",
                basic=False,
            )
        return HTTPSeeOther(request.route_url("login", _query={"os_destination": request.path_qs}))
    return error_response(
        request,
        403,
        ["You do not have permission to do this. Ask an administrator if you need access."],
        actions=[("Home", request.route_path("home"))],
    )


@notfound_view_config()
def notfound(exc, request: Request):
    if isinstance(exc, PredicateMismatch) and request.matched_route is not None:
        # The URL exists, the method does not (e.g. GET /logout: logging out is POST only).
        return error_response(
            request,
            405,
            [f"{request.method} is not allowed here."],
            actions=[("Home", request.route_path("home"))],
        )
    return error_response(
        request,
        404,
        ["There is nothing at this address. Check the link, or start again from the home page."],
        actions=[("Home", request.route_path("home"))],
    )


@exception_view_config(BadCSRFToken)
def bad_csrf(exc, request: Request):
    return error_response(
        request,
        400,
        ["This form has expired or was sent from another site. Go back, reload the page and "
         "try again."],
        actions=[("Home", request.route_path("home"))],
    )


@exception_view_config(HTTPException)
def http_exception(exc: HTTPException, request: Request):
    if exc.code < 400:
        return exc
    response = error_response(request, exc.code, [exc.detail or exc.explanation or exc.title])
    for name in ("Allow", "Retry-After", "WWW-Authenticate"):
        if name in exc.headers:
            response.headers[name] = exc.headers[name]
    return response


@exception_view_config(DATABASE_UNAVAILABLE[0])
@exception_view_config(DATABASE_UNAVAILABLE[1])
@exception_view_config(DATABASE_UNAVAILABLE[2])
def database_unavailable(exc, request: Request):
    # A transient error (SQLite busy, a serialization failure, a cut connection) is marked
    # for pyramid_retry, which throws this answer away and runs the request again; only the
    # last attempt's 503 reaches the client.
    if retry_transient(request, exc):
        log.info("transient database error, retrying: %s", type(exc).__name__)
    else:
        log.warning("database unavailable: %s", type(exc).__name__)
    # The page's layout shows who is logged in, but after a failed flush the user's row can
    # no longer be read (a 500 instead of this 503): answer as the authentication tween does
    # when the database fails it, for nobody.
    request.registry.security_policy.unauthenticated(request)
    return unavailable_response(request)


@exception_view_config(Exception)
def server_error(exc, request: Request):
    log.error("unhandled error on %s %s", request.method, request.path_info, exc_info=exc)
    return error_response(
        request,
        500,
        ["Something went wrong on our side. It has been logged; try again, and if it keeps "
         "happening, tell the administrator."],
        actions=[("Home", request.route_path("home"))],
    )
