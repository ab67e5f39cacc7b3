"""HTML pages of the demo issue tracker: the issue list (with an optional JQL filter) and
single issues.

Visibility comes from the security policy, as in the REST API: the list shows the security
levels ``viewable_levels`` allows, an issue page needs ``has_permission("view", issue)``.
A missing issue and one the visitor may not see get the same 404 page, so a key's existence
does not leak; for anonymous visitors that page offers a log-in link that returns to the
issue (no redirect: a redirect for hidden issues only would reveal that they exist).
"""
from __future__ import annotations

import re

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from .. import jql, search
from ..errors import error_response
from ..models.issue import STATUSES, find_issue
from .query import RepeatedParameter, repeated_response, single

PAGE_SIZE = 50
ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."


def _page_number(request: Request) -> int | None:
    value = single(request.GET, "page", "1").strip()
    if not re.fullmatch(r"[0-9]{1,6}", value) or int(value) < 1:
        return None
    return int(value)


@view_config(
    route_name="issues",
    request_method="GET",
    renderer="appserver:templates/issues.jinja2",
    permission=NO_PERMISSION_REQUIRED,
)
def issue_list(request: Request):
    try:
        page, text = _page_number(request), single(request.GET, "jql")
    except RepeatedParameter as error:
        return repeated_response(request, error, actions=[("All issues", request.route_path("issues"))])
    if page is None:
        return error_response(
            request, 400, ["The page number must be a whole number from 1 up."],
            errors={"page": "must be a whole number from 1 up"},
            actions=[("First page", request.route_path("issues"))],
        )
    context = {
        "jql": text, "error": None, "issues": [], "total": 0, "page": page, "pages": 1,
        "first": 0, "prev_url": None, "next_url": None,
    }
    try:
        query = search.parse(request, text)
        problems = search.problems(request, query)
        if problems:
            raise jql.JQLError(" ".join(problems))
    except jql.JQLError as error:
        request.response.status = 400
        context["error"] = str(error)
        return context
    try:
        result = search.run(request, query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
        pages = max(1, -(-result.total // PAGE_SIZE))
        if page > pages:
            # Past the end (fewer issues than when the link was made: a session that expired
            # shows the public ones only; an old bookmark): the last page, not "showing 51-50,
            # page 2 of 1". Answered here, not redirected, so that this page still says why.
            page = pages
            result = search.run(request, query, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    except jql.SearchTimeout:
        return search.timeout_response(request)

    def page_url(number: int) -> str:
        query_string = {"page": str(number)}
        if text:
            query_string["jql"] = text
        return request.route_path("issues", _query=query_string)

    context.update(
        page=page,
        issues=result.issues,
        total=result.total,
        pages=pages,
        first=(page - 1) * PAGE_SIZE,
        prev_url=page_url(min(page - 1, pages)) if page > 1 else None,
        next_url=page_url(page + 1) if page < pages else None,
    )
    return context


@view_config(
    route_name="issue",
    request_method="GET",
    renderer="appserver:templates/issues_detail.jinja2",
    permission=NO_PERMISSION_REQUIRED,
)
def issue_page(request: Request):
    issue = find_issue(request.dbsession, request.matchdict["key"])
    if issue is None or not request.has_permission("view", issue):
        actions = [("All issues", request.route_path("issues"))]
        if request.user is None:
            login = request.route_path("login", _query={"os_destination": request.path_qs})
            actions.insert(0, ("Log in", login))
        return error_response(request, 404, [ISSUE_NOT_FOUND], actions=actions)
    return {"issue": issue, "status": STATUSES[issue.status]}
