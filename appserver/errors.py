"""One way to answer with an error: Jira's JSON shape under ``/rest``, a page elsewhere.

Used by the exception views and by the tweens (which sit above the exception view and so
must answer with a response rather than raise). And what an exception view leaves behind:
its traceback, freed when the request ends.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pyramid.config import Configurator
from pyramid.interfaces import IViewDeriverInfo
from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

from .rendering import json_response

TITLES = {
    400: "Bad request",
    401: "Log in required",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Request too large",
    415: "Unsupported media type",
    429: "Too many requests",
    500: "Something went wrong",
    503: "Temporarily unavailable",
}


def is_rest(request: Request) -> bool:
    prefix = request.registry.appserver_settings.rest_prefix
    # The raw WSGI path: the prefix is ASCII, so it matches the raw path exactly when it
    # matches the decoded one (and a path that is not UTF-8 still gets its JSON 400).
    path = request.environ.get("PATH_INFO", "")
    return path == prefix or path.startswith(prefix + "/")


def wants_json(request: Request) -> bool:
    if is_rest(request):
        return True
    offers = request.accept.acceptable_offers(["text/html", "application/json"])
    return bool(offers) and offers[0][0] == "application/json"


def jira_error_body(messages: Iterable[str], errors: Mapping[str, str] | None = None) -> dict:
    return {"errorMessages": list(messages), "errors": dict(errors or {})}


def error_response(
    request: Request,
    status: int,
    messages: Iterable[str],
    *,
    errors: Mapping[str, str] | None = None,
    headers: Iterable[tuple[str, str]] = (),
    actions: Iterable[tuple[str, str]] = (),
    login_destination: str | None = None,
) -> Response:
    """``actions`` are (label, url) links an HTML page offers as the next step;
    ``login_destination``, where the header's Log in link returns (this page by default)."""
    messages = list(messages)
    if wants_json(request):
        response = json_response(jira_error_body(messages, errors), status)
    else:
        response = render_to_response(
            "appserver:templates/error.jinja2",
            {
                "status": status,
                "title": TITLES.get(status, "Error"),
                "messages": messages,
                "errors": dict(errors or {}),
                "actions": list(actions),
                "login_destination": login_destination,
            },
            request=request,
        )
        response.status = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers:
        if name.lower() == "set-cookie":
            response.headers.add(name, value)  # one header per cookie
        else:
            response.headers[name] = value
    return response


def _free_tracebacks(request: Request) -> None:
    """Drop the tracebacks of the exception an exception view answered (and of its causes).

    Pyramid keeps the exception and its traceback on the request (``request.exception``,
    ``request.exc_info``); the traceback holds the frames it passed through, whose locals
    hold the request: a reference cycle of some seventy objects per refused request (a 401
    for a protected resource, a 404), which only the garbage collector frees, walking the
    whole process to do so. Run when the request is finished, after every tween and
    logger; the exception itself stays (pyramid_retry reads ``request.exception`` then).
    """
    exc_info = request.__dict__.get("exc_info")
    if not exc_info:
        return
    seen: set[int] = set()
    error: BaseException | None = exc_info[1]
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        error.__traceback__ = None
        error = error.__cause__ or error.__context__
    request.exc_info = (exc_info[0], exc_info[1], None)


def free_tracebacks_view_deriver(view: Callable[..., Any], info: IViewDeriverInfo) -> Callable[..., Any]:
    """Exception views only: other views run without a traceback (and unwrapped)."""
    if not info.exception_only:
        return view

    def exception_view(context: Any, request: Request) -> Any:
        request.add_finished_callback(_free_tracebacks)
        return view(context, request)

    return exception_view


class MethodNotIn:
    """The view predicate ``method_not_in=("GET", "HEAD")``: every other method, whatever its
    name (a PROPFIND too). ``request_method=not_(...)`` says the same, but ``proutes`` cannot
    print it and fails with a traceback (an outside review)."""

    def __init__(self, methods: tuple[str, ...], config: Configurator) -> None:
        self.methods = frozenset(methods)

    def text(self) -> str:
        return f"method_not_in = {sorted(self.methods)}"

    phash = text

    def __call__(self, context: Any, request: Request) -> bool:
        return request.method not in self.methods


def includeme(config: Configurator) -> None:
    config.add_view_deriver(free_tracebacks_view_deriver)
    config.add_view_predicate("method_not_in", MethodNotIn)
