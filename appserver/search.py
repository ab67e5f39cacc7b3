"""Searching issues for a request: JQL parsed and run within the bounds the settings set
(``appserver.jql.max_length``, ``appserver.jql.max_terms``, ``appserver.search.statement_timeout``),
for the HTML issue list and the REST search alike."""
from __future__ import annotations

from pyramid.request import Request
from pyramid.response import Response

from . import jql
from .errors import error_response
from .models import is_read_only
from .models.issue import viewable_levels

RETRY_AFTER_SECONDS = 10


def parse(request: Request, text: str) -> jql.Query:
    settings = request.appserver_settings
    return jql.parse(text, max_length=settings.jql_max_length, max_terms=settings.jql_max_terms)


def problems(request: Request, query: jql.Query) -> list[str]:
    """What ``validateQuery`` reports for this request (issues it may not see do not exist)."""
    return jql.check_values(query, request.dbsession, viewable_levels(request))


def run(request: Request, query: jql.Query, start: int, limit: int) -> jql.SearchResult:
    """The page of issues this request may see; raises :class:`jql.SearchTimeout`."""
    return jql.run(
        request.dbsession, query, viewable_levels(request), start, limit,
        statement_timeout=request.appserver_settings.search_statement_timeout,
    )


def timeout_response(request: Request) -> Response:
    """The database stopped the search: abort the transaction (PostgreSQL refuses anything
    more in it) and say so."""
    if is_read_only(request):  # a GET has no transaction: end its read-only session's
        request.dbsession.close()
    else:
        request.tm.doom()
    return error_response(
        request,
        503,
        ["The search took longer than this server allows and was stopped. Narrow it down "
         "(fewer words, a project or a status), or try again in a moment."],
        headers=[("Retry-After", str(RETRY_AFTER_SECONDS))],
    )
