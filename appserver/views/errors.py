"""Exception views: every error is Jira-shaped JSON under /rest and a helpful page elsewhere."""
from __future__ import annotations

import functools
import logging

from pyramid.csrf import BadCSRFToken
from pyramid.exceptions import PredicateMismatch
from pyramid.httpexceptions import HTTPException, HTTPSeeOther
from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import exception_view_config, forbidden_view_config, notfound_view_config, view_config
from sqlalchemy import exc as sa_exc

from ..errors import error_response, is_rest
from ..models import (
    DATABASE_UNAVAILABLE,
    abandon_request_transaction,
    commit_in_doubt,
    is_unavailable,
    retry_transient,
    transient_kind,
)
from ..repeated_warning import RepeatedWarning
from ..security.redirects import DEFAULT_DESTINATION
from ..security.cookies import delete_cookie
from ..security.responses import (
    commit_in_doubt_response, stale_session_response, unauthorized_response, unavailable_response,
)
from ..security.sessions import SessionEnded
from ..startup import database_problem
from .pages import FORM_UNSENT_PARAM, SESSION_EXPIRED_PARAM, login_destination

log = logging.getLogger(__name__)
unavailable_log = RepeatedWarning(log)


def form_page(request: Request) -> str | None:
    """The page a form was sent from, by its same-site ``Referer`` (None without one)."""
    referer, origin = request.referer or "", request.host_url
    return referer[len(origin):] if referer.startswith(origin + "/") else None


@forbidden_view_config()
def forbidden(exc, request: Request):
    if request.user is None:
        if is_rest(request):
            return unauthorized_response(
                request,
                "You are not authenticated. Authentication required to perform this operation.",
                basic=False,
            )
        # The stale cookie is deleted by this very redirect (kept, moments after another
        # tab's rotation, whose cookies stand), so the login page cannot see it: the
        # redirect itself says the session expired (a flag, never a text of the URL's).
        if request.method in ("GET", "HEAD"):
            query = {"os_destination": request.path_qs}
        else:
            # A form's POST: after the login a GET of its address would be a 405. Back to the
            # form's page instead, and the login page says the form was not carried out.
            query = {"os_destination": login_destination(request, form_page(request)), FORM_UNSENT_PARAM: "1"}
        if request.authentication.stale_cookie:
            query[SESSION_EXPIRED_PARAM] = "1"
        return HTTPSeeOther(request.route_url("login", _query=query))
    return error_response(
        request,
        403,
        ["You do not have permission to do this. Ask an administrator if you need access."],
        actions=[("Home", request.route_path("home"))],
    )


@functools.lru_cache(maxsize=256)
def _allowed_methods(introspector, route_name: str) -> tuple[str, ...]:
    methods: set[str] = set()
    route = introspector.get("routes", route_name)
    for view in introspector.related(route) if route is not None else ():
        if view.category_name != "views":
            continue
        wanted = view["request_methods"]
        if wanted is None:
            return ()  # a view for any method: whatever did not match, it was not the method
        methods.update((wanted,) if isinstance(wanted, str) else wanted)
    if "GET" in methods:
        methods.add("HEAD")
    return tuple(sorted(methods))


def allowed_methods(registry, route_name: str) -> tuple[str, ...]:
    """The methods some view of the route answers (for a 405's ``Allow``); () when a view
    takes any method."""
    return _allowed_methods(registry.introspector, route_name)


def method_not_allowed(request: Request, allowed: tuple[str, ...]):
    """The 405 of a URL that exists, with ``Allow`` when the methods are known."""
    messages = [f"{request.method} is not allowed here."]
    if allowed:
        messages = [f"{request.method} is not allowed here: use {' or '.join(allowed)}."]
    if request.matched_route is not None and request.matched_route.name == "logout":
        messages.append("To log out, use the Log out button at the top of any page.")
    response = error_response(request, 405, messages, actions=[("Home", request.route_path("home"))])
    if allowed:
        response.headers["Allow"] = ", ".join(allowed)
    return response


#: The route ``add_static_view("static", ...)`` makes (appserver/rendering.py).
STATIC_ROUTE = "__static/"


@view_config(route_name=STATIC_ROUTE, method_not_in=("GET", "HEAD"),
             permission=NO_PERMISSION_REQUIRED, require_csrf=False)
def static_method_not_allowed(request: Request):
    """``add_static_view``'s view answers any method: a POST met the CSRF check (a 400 "this
    form has expired", and a CSRF cookie), a TRACE or a PROPFIND got the file."""
    return method_not_allowed(request, ("GET", "HEAD"))


@notfound_view_config()
def notfound(exc, request: Request):
    if isinstance(exc, PredicateMismatch) and request.matched_route is not None:
        # The URL exists, the method does not (e.g. GET /logout: logging out is POST only).
        return method_not_allowed(request, allowed_methods(request.registry, request.matched_route.name))
    path = request.path_info[:200]
    if is_rest(request):
        # A program reads this: where it asked, and where to learn what this server offers.
        info = request.route_path("rest.server_info", version="2")
        return error_response(request, 404, [f"No REST resource at {path}; see {info}"])
    actions = [("Home", request.route_path("home")), ("Issues", request.route_path("issues"))]
    if request.user is None:
        actions.append(("Log in", request.route_path("login")))
    else:
        actions.append(("Your account", request.route_path("account")))
    return error_response(
        request,
        404,
        [f"There is no page at {path}. Check the link, or go on from one of these pages."],
        actions=actions,
    )


@exception_view_config(BadCSRFToken)
def bad_csrf(exc, request: Request):
    actions = [("Home", request.route_path("home"))]
    if request.matched_route is not None and request.matched_route.name == "login":
        # The login form was refused (open too long, cookies blocked): a fresh one, still
        # leading where this login was going.
        destination = login_destination(request, request.POST.get("os_destination"))
        query = {"os_destination": destination} if destination != DEFAULT_DESTINATION else {}
        actions.append(("Back to the form", request.route_path("login", _query=query)))
    return error_response(
        request,
        400,
        ["This form has expired or was sent from another site. Go back, reload the page and "
         "try again."],
        actions=actions,
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


@exception_view_config(SessionEnded)
def session_ended(exc: SessionEnded, request: Request):
    """A rotation found its session revoked meanwhile (a log-out from another browser got in
    first): nothing of the request is committed, and the client is told its session ended,
    as the next request would tell it (rule 1 under /rest, the login page elsewhere)."""
    abandon_request_transaction(request)
    request.registry.security_policy.unauthenticated(request)
    settings = request.appserver_settings
    deletion = [("Set-Cookie", delete_cookie(settings, settings.session_cookie))]
    if is_rest(request):
        return stale_session_response(request, deletion)
    query = {"os_destination": login_destination(request, form_page(request)), SESSION_EXPIRED_PARAM: "1"}
    return HTTPSeeOther(request.route_url("login", _query=query), headers=deletion)


@exception_view_config(DATABASE_UNAVAILABLE[0])
@exception_view_config(DATABASE_UNAVAILABLE[1])
@exception_view_config(DATABASE_UNAVAILABLE[2])
@exception_view_config(DATABASE_UNAVAILABLE[3])
def database_unavailable(exc, request: Request):
    if not is_unavailable(exc):
        return server_error(exc, request)
    # A transient error (SQLite busy, a serialization failure, a cut connection) is marked
    # for pyramid_retry, which throws this answer away and runs the request again; only the
    # last attempt's 503 reaches the client. A COMMIT that got no answer is never run again.
    if commit_in_doubt(request, exc):
        log.warning(
            "the database connection was lost while %s %s committed; its writes may or may "
            "not have been saved (%s)", request.method, request.path_info, transient_kind(exc),
        )
        request.registry.security_policy.unauthenticated(request)
        return commit_in_doubt_response(request)
    if retry_transient(request, exc):
        log.info("transient database error, running %s again: %s", request.path_info, transient_kind(exc))
    else:
        problem = database_problem(exc, request.registry.dbengine.url)
        unavailable_log.warning(problem, "database unavailable: %s", problem)
        request.registry.outage_watch.refused_request(exc)
    # The page's layout shows who is logged in, but after a failed flush the user's row can
    # no longer be read (a 500 instead of this 503): answer as the authentication tween does
    # when the database fails it, for nobody.
    request.registry.security_policy.unauthenticated(request)
    return unavailable_response(request)


@exception_view_config(Exception)
def server_error(exc, request: Request):
    log.error("unhandled error on %s %s", request.method, request.path_info, exc_info=exc)
    if isinstance(exc, sa_exc.SQLAlchemyError):
        # A statement that failed (a constraint, say) leaves the request's session unusable
        # until it is rolled back, and the page's layout would ask it who is logged in:
        # nothing is committed, and the page is for nobody, as a 503 is.
        abandon_request_transaction(request)
        request.registry.security_policy.unauthenticated(request)
    return error_response(
        request,
        500,
        ["Something went wrong on our side. It has been logged; try again, and if it keeps "
         "happening, tell the administrator."],
        actions=[("Home", request.route_path("home"))],
    )
