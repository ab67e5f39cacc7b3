"""One way to answer with an error: Jira's JSON shape under ``/rest``, a page elsewhere.

Used by the exception views and by the tweens (which sit above the exception view and so
must answer with a response rather than raise).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from pyramid.renderers import render_to_response
from pyramid.request import Request
from pyramid.response import Response

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
) -> Response:
    """``actions`` are (label, url) links an HTML page offers as the next step."""
    messages = list(messages)
    if wants_json(request):
        response = Response(
            json_body=jira_error_body(messages, errors),
            status=status,
            charset="utf-8",
            content_type="application/json",
        )
    else:
        response = render_to_response(
            "appserver:templates/error.jinja2",
            {
                "status": status,
                "title": TITLES.get(status, "Error"),
                "messages": messages,
                "errors": dict(errors or {}),
                "actions": list(actions),
            },
            request=request,
        )
        response.status = status
    response.headers["Cache-Control"] = "no-store"
    for name, value in headers:
        response.headers[name] = value
    return response
