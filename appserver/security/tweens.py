"""The seed's rules, applied by tweens around every request.

Order (outermost first; ``ptweens development.ini`` shows it):

    process_header_tween_factory    X-Appserver-Process when enabled (appserver/process_header.py)
    security_headers_tween          (perimeter.py) headers on every response
    status_tween_factory            GET /status, before any transaction or credential (health.py)
    allowed_host_tween              (perimeter.py) 400 for a Host not allowed
    unreadable_request_tween        400/415 for a URL or form that cannot be read (not
                                    UTF-8, a multipart body without its boundary); above
                                    the debug toolbar of development.ini, which reads them
    pyramid_tm                      transaction per unsafe request (none for GET, HEAD,
                                    OPTIONS: appserver.models.transaction_wanted)
    authentication_tween_factory    authenticate once; 503 if the database is down; failed
                                    Basic or Bearer is a 401 everywhere; identity headers;
                                    cookies
    os_authtype_tween_factory       rule 2: ?os_authType=basic|cookie|any on any URL
    rest_cookie_rule_tween_factory  rule 1: a stale cookie under /rest is a 401
    rest_xsrf_tween_factory         Atlassian's XSRF rule for cookie-authenticated POSTs
    excview                         exception views

From authentication on they sit inside pyramid_tm and above the exception view, and answer
with responses instead of raising. Authentication's own writes (failure counts, lock-outs,
touches, rotations) are not part of the request's transaction: they are committed by units
of work of their own (appserver/models/units.py) before the view runs, and the request's
transaction is never committed half-way.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from urllib.parse import parse_qsl, quote

from pyramid.registry import Registry
from pyramid.request import Request
from pyramid.response import Response

from ..errors import error_response, is_rest
from ..models import (
    DATABASE_UNAVAILABLE, abandon_request_transaction, is_unavailable, retry_transient, transient_kind,
)
from ..repeated_warning import RepeatedWarning
from ..startup import database_problem
from . import client
from .basic import basic_challenge
from .cookies import delete_cookie
from .header_values import encode_header_value
from .identity import Authentication, BasicState
from .paths import credential_free
from .personal_tokens import TokenState, bearer_challenge
from .responses import (
    ANONYMOUS, denied_response, stale_session_response, unauthorized_response, unavailable_response,
    without_os_authtype,
)
from .sessions import CookieState

log = logging.getLogger(__name__)
unavailable_log = RepeatedWarning(log)

Handler = Callable[[Request], Response]

OS_AUTHTYPES = ("none", "basic", "cookie", "any")


#: Bodies WebOb parses into ``request.POST``; it raises for any charset but UTF-8.
FORM_TYPES = ("", "application/x-www-form-urlencoded", "multipart/form-data")


def unreadable_request_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """Refuse a request WebOb cannot decode, before anything reads it.

    WebOb decodes the path, the query string and form bodies as UTF-8 and raises (from
    ``request.path_info``, ``request.GET``, ``request.POST``) when they are not, which
    every later layer would turn into a 500. This is the one place that decides instead.
    """

    def unreadable_request_tween(request: Request) -> Response:
        status, message = _unreadable(request)
        if status is None:
            return handler(request)
        # The request is refused: make its URL safe to render the error page (which
        # links back to the current path), since the original cannot be decoded. The page
        # answers as anonymous without reading credentials: a remember-me token rotated
        # here would never reach the client.
        registry.security_policy.unauthenticated(request)
        raw_path = request.environ.get("PATH_INFO", "").encode("latin-1")
        request.environ["PATH_INFO"] = quote(raw_path, safe="/")
        request.environ["QUERY_STRING"] = ""
        return error_response(request, status, [message], headers=[ANONYMOUS],
                              actions=[("Home", request.route_path("home"))])

    return unreadable_request_tween


def _unreadable(request: Request) -> tuple[int | None, str]:
    # The raw WSGI values first: an ASCII path (WSGI hands it over unquoted) and a query
    # string with neither escapes nor non-ASCII bytes decode, so most requests are not
    # decoded here (a view that needs request.GET decodes it then).
    environ = request.environ
    if not environ.get("PATH_INFO", "").isascii():
        try:
            request.path_info
        except UnicodeDecodeError:
            return 400, "The address of this request is not valid UTF-8. Check the link."
    query = environ.get("QUERY_STRING", "")
    if query and not (query.isascii() and "%" not in query):
        try:
            request.GET
        except UnicodeDecodeError:
            return 400, "The query string of this request is not valid UTF-8. Check the link."
    # WebOb decodes a form only then: a request with no Content-Type has a form to refuse
    # only when it is a POST.
    if not environ.get("CONTENT_TYPE") and environ.get("REQUEST_METHOD") != "POST":
        return None, ""
    content_type = request.content_type.strip().lower()
    if content_type != request.content_type:
        # A media type is case-insensitive (RFC 9110, 8.3.1); WebOb and the views compare it
        # as a string ("APPLICATION/JSON" was a 415, a form in capitals read as no form).
        raw = environ["CONTENT_TYPE"]
        environ["CONTENT_TYPE"] = content_type + (";" + raw.split(";", 1)[1] if ";" in raw else "")
    if content_type not in FORM_TYPES or not (content_type or request.method == "POST"):
        return None, ""
    if request.charset != "UTF-8":
        return 415, "Form data must be sent encoded as UTF-8."
    return _unreadable_form(request, content_type)


def _unreadable_form(request: Request, content_type: str) -> tuple[int | None, str]:
    """A form must be UTF-8 text, field by field. WebOb's parser replaces bytes that are not
    UTF-8 with U+FFFD (a name or a password stored changed, silently), and hands a file part
    to the view as an object where every form here expects a string (a 500 at the first
    ``.strip()``). No page of this application uploads a file, so once file parts are
    refused, the whole body must decode: the parts' headers are ASCII, their values text."""
    body = request.body  # at most max_request_body_size (1 MiB), read once, kept
    try:
        text = body.decode("utf-8")
        if content_type != "multipart/form-data":
            parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        return 400, "The form data is not valid UTF-8 text. Send it again from the page."
    if content_type == "multipart/form-data":
        try:
            fields = request.POST  # parsed once here, kept for the view
        except ValueError:  # no boundary, or one the parser refuses
            return 400, "The form data could not be read: a multipart body needs a valid boundary."
        for name, value in fields.items():
            if not isinstance(value, str):
                return 400, f"The form field “{name}” is a file; this form takes text only."
    return None, ""


def authentication_tween_factory(handler: Handler, registry: Registry) -> Handler:
    def authentication_tween(request: Request) -> Response:
        if credential_free(request):
            return handler(request)
        try:
            # Authentication reads and writes in units of work of its own (committed as they
            # go); the request's transaction only begins when the view uses request.dbsession.
            auth = request.authentication
        except DATABASE_UNAVAILABLE as error:
            if not is_unavailable(error):
                raise  # a bug: the exception views answer 500
            if retry_transient(request, error):
                log.info(
                    "transient database error while authenticating, running %s again: %s",
                    request.path_info,
                    transient_kind(error),
                )
                raise  # pyramid_retry runs the request again
            problem = database_problem(error, registry.dbengine.url)
            unavailable_log.warning(
                problem, "database unavailable while authenticating %s: %s", request.path_info, problem
            )
            registry.outage_watch.refused_request(error)
            abandon_request_transaction(request)
            # The 503 page (its layout shows who is logged in) must not ask the database again.
            registry.security_policy.unauthenticated(request)
            return unavailable_response(request)
        if auth.basic is BasicState.ABSENT and auth.bearer is TokenState.ABSENT:
            response = handler(request)  # no Authorization header: most requests
        elif auth.basic.failed:
            response = error_response(
                request,
                401,
                [_basic_failure(request, auth)],
                headers=[("WWW-Authenticate", basic_challenge(registry.appserver_settings.basic_realm))],
            )
        elif auth.basic is BasicState.DENIED:
            response = denied_response(request, auth.retry_after or 1)
        elif auth.bearer.failed:
            response = _bearer_refused(request, auth)
        else:
            response = handler(request)
        _finish(request, response)
        return response

    return authentication_tween


def _basic_failure(request: Request, auth: Authentication) -> str:
    """What was wrong with the Authorization header, as far as it tells nothing about the
    account: a wrong password and an unknown user get the same words."""
    if auth.basic is BasicState.WRONG:
        return "Basic authentication failed: the username or password is wrong."
    scheme = request.headers.get("Authorization", "").strip().partition(" ")[0]
    if scheme.lower() not in ("basic", "bearer"):
        shown = client.printable(scheme, 20) or "(none)"
        return (f"The Authorization scheme {shown!r} is not accepted here: send Basic (a "
                "username and password) or Bearer (a personal access token).")
    return "Basic authentication failed: the credentials could not be read (base64 of username:password)."


BEARER_REFUSALS = {
    "malformed": "The personal access token is malformed: send the whole token as created.",
    "unknown": "The personal access token is not valid.",
    "expired": "The personal access token has expired: create a new one on your account page.",
    "revoked": "The personal access token has been revoked: create a new one on your account page.",
    "inactive": "The personal access token belongs to a deactivated account.",
}


def _bearer_refused(request: Request, auth: Authentication) -> Response:
    """RFC 6750's answer to a token that cannot be used: never treated as anonymous."""
    message = BEARER_REFUSALS[auth.bearer.value]
    realm = request.registry.appserver_settings.basic_realm
    return error_response(
        request,
        401,
        [message],
        headers=[("WWW-Authenticate", bearer_challenge(realm, message))],
    )


def os_authtype_tween_factory(handler: Handler, registry: Registry) -> Handler:
    if not registry.appserver_settings.os_authtype:
        return handler

    def os_authtype_tween(request: Request) -> Response:
        if not request.environ.get("QUERY_STRING"):
            return handler(request)
        # An empty value is no demand, as for Seraph (a client that builds its URL with the
        # parameter always present): the default behaviour, as "none".
        values = {v.strip().lower() for v in request.GET.getall("os_authType")} - {""}
        if not values or values == {"none"}:
            return handler(request)
        if len(values) > 1 or not values <= set(OS_AUTHTYPES):
            given = ", ".join(sorted(repr(v) for v in values))
            return error_response(
                request,
                400,
                [f"Unsupported os_authType {given}: use one of {', '.join(OS_AUTHTYPES)}."],
                errors={"os_authType": "must be one of " + ", ".join(OS_AUTHTYPES)},
                actions=[("Open the page without os_authType", without_os_authtype(request))],
            )
        if credential_free(request):  # no credential is read there, so none is demanded
            return handler(request)
        (wanted,) = values
        auth: Authentication = request.authentication
        identity = auth.identity
        if wanted == "basic" and auth.basic is not BasicState.VALID:
            message = "os_authType=basic: send a username and password with HTTP Basic."
        elif wanted == "cookie" and not _served_as_the_cookie_says(auth):
            if auth.explicit and auth.cookie is CookieState.LIVE:
                message = ("os_authType=cookie: the session cookie and the Authorization header "
                           "name different users: send the cookie alone.")
            else:
                message = "os_authType=cookie: a valid session cookie is required. " + (
                    "Log in again." if auth.stale_cookie else "Log in first.")
        elif wanted == "any" and identity is None:
            message = (
                "os_authType=any: send HTTP Basic credentials, a personal access token "
                "(Authorization: Bearer) or a valid session cookie."
            )
        else:
            return handler(request)
        # A Basic challenge when Basic can meet the demand; a demand for a cookie gets the
        # session challenge even when Basic was sent (a browser's password dialog could
        # never meet it).
        basic = wanted != "cookie"
        registry.security_policy.refuse(request)  # the 401 is anonymous, whoever was presented
        return unauthorized_response(request, message, basic=basic, without_demand=wanted == "basic")

    return os_authtype_tween


def _served_as_the_cookie_says(auth: Authentication) -> bool:
    """Whether a live session cookie authenticates this request: it serves it, or Basic or a
    token beside it (which win) names the same user. Alice's cookie beside Fred's Basic is
    not met: the request would be answered as Fred."""
    identity = auth.identity
    if identity is None:
        return False
    if identity.cookie_based:
        return True
    session = auth.presented_session
    return auth.cookie is CookieState.LIVE and session is not None and session.user_id == identity.user.id


def rest_cookie_rule_tween_factory(handler: Handler, registry: Registry) -> Handler:
    if not registry.appserver_settings.rest_cookie_rule:
        return handler

    def rest_cookie_rule_tween(request: Request) -> Response:
        auth: Authentication = request.authentication
        if auth.identity is not None:
            return handler(request)  # someone is logged in: nothing to refuse
        if auth.stale_cookie and is_rest(request) and not _is_rest_login(request):
            return stale_session_response(request)  # the cookies stay: see _finish
        return handler(request)

    return rest_cookie_rule_tween


#: Bodies a browser can POST cross-site without CORS (HTML forms, or no body at all).
BROWSER_POSTABLE = {"", "application/x-www-form-urlencoded", "multipart/form-data", "text/plain"}


def rest_xsrf_tween_factory(handler: Handler, registry: Registry) -> Handler:
    """A cookie-authenticated POST under /rest whose body a cross-site form could have sent
    needs ``X-Atlassian-Token: no-check`` (Atlassian's rule). JSON bodies cannot be sent
    cross-site without CORS. A forged form never carries a Bearer token; a browser may send
    cached Basic credentials with one, which this rule leaves to the resources: every REST
    POST here takes JSON only, and answers a form's body 415 (tests/test_hostile_input.py)."""

    def rest_xsrf_tween(request: Request) -> Response:
        if request.environ.get("REQUEST_METHOD") != "POST" or not is_rest(request):
            return handler(request)
        identity = request.authentication.identity
        if identity is None or not identity.cookie_based:
            return handler(request)
        # Media types are case-insensitive: a cross-site fetch() may send "Text/Plain".
        if request.content_type.strip().lower() not in BROWSER_POSTABLE:
            return handler(request)
        if request.headers.get("X-Atlassian-Token", "").strip().lower() in ("no-check", "nocheck"):
            return handler(request)
        return error_response(
            request,
            403,
            ["XSRF check failed: send the header 'X-Atlassian-Token: no-check' with this request, "
             "or send a JSON body (Content-Type: application/json)."],
        )

    return rest_xsrf_tween


def _is_rest_login(request: Request) -> bool:
    """POST to the session resource: a client with a stale cookie must be able to log in."""
    route = request.registry.appserver_settings.rest_prefix + "/auth/"
    return request.method == "POST" and request.path_info in (
        route + "1/session",
        route + "latest/session",
    )


#: What every answer varies with (sorted, as WebOb writes it): the same URL answers a logged-in
#: user and an anonymous one differently (200 issues or 5), so a shared cache must not hand
#: one's answer to the other.
VARY = ("Authorization", "Cookie")
VARY_HEADER = ", ".join(VARY)


def _stale_ones_kept(request: Request, auth: Authentication) -> dict[str, str]:
    """The cookie changes of a /rest answer that names nobody, without the deletion of a
    stale login cookie. Deleted, a client's cookie jar would send its next request without
    it, and that request would be answered as anonymous: the 5 public issues rule 1 exists
    to prevent (an outside review, with the unmodified jira client; and a second one, after
    an os_authType refusal, a failed REST login or a 400). Kept, each request is refused
    until the client logs in again. Pages delete them (a stale cookie means anonymous there),
    as does an answer served by Basic or a token, and /rest with rule 1 switched off. New
    cookies (a remember-me rotation that os_authType then refused) always reach the client."""
    settings = request.appserver_settings
    return {
        name: header for name, header in auth.cookies.items()
        if not (name in (settings.session_cookie, settings.remember_cookie)
                and header == delete_cookie(settings, name))
    }


def _finish(request: Request, response: Response) -> None:
    """Stamp who answered and apply the cookie changes authentication decided on."""
    auth: Authentication = request.authentication
    if auth.anonymous and getattr(request, "login_reason", None) is None:
        # Nothing presented, nothing to set (most anonymous requests): only who answered.
        headerlist = response.headerlist
        for name, _ in headerlist:
            if name.lower() in ("x-ausername", "vary"):
                break
        else:
            headerlist.append(("X-AUSERNAME", "anonymous"))
            headerlist.append(("Vary", VARY_HEADER))
            return
    user = auth.account  # who: no ORM object is made for it
    # Headers appended to the list directly, after one pass to see which are there already:
    # response.headers scans every header again for each lookup, on every response.
    headerlist = response.headerlist
    present = {name.lower() for name, _ in headerlist}
    who = encode_header_value(user.username) if user else "anonymous"
    if "x-ausername" in present:
        response.headers["X-AUSERNAME"] = who
    else:
        headerlist.append(("X-AUSERNAME", who))
    reason = getattr(request, "login_reason", None)
    if reason is None:
        if auth.basic.failed or auth.bearer.failed:
            reason = "AUTHENTICATED_FAILED"
        elif auth.basic is BasicState.DENIED:
            reason = "AUTHENTICATION_DENIED"
        elif user is not None:
            reason = "OK"
    if reason is not None and "x-seraph-loginreason" not in present:
        headerlist.append(("X-Seraph-LoginReason", reason))
    if auth.cookies:
        keep_stale = user is None and is_rest(request) and request.appserver_settings.rest_cookie_rule
        cookies = _stale_ones_kept(request, auth) if keep_stale else auth.cookies
        already_set = {
            value.split("=", 1)[0].strip() for name, value in headerlist if name.lower() == "set-cookie"
        }
        for name, header in cookies.items():
            if name not in already_set:
                headerlist.append(("Set-Cookie", header))
    if (user is not None or auth.stale_cookie) and "cache-control" not in present:
        headerlist.append(("Cache-Control", "no-store"))
    if "vary" in present:
        response.vary = tuple(sorted(set(response.vary or ()) | set(VARY)))
    else:
        headerlist.append(("Vary", VARY_HEADER))
