"""``/rest/api/2``: issue search, single issues and the field list, in Jira's shapes.

What a caller may see is decided by the security policy: searches are limited to the security
levels ``request.has_permission("view", level)`` allows, a single issue is shown when
``request.has_permission("view", issue)`` (the issue's ACL). An issue the caller may not see
is a 404 with the same message as one that does not exist, so its existence does not leak.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config

from ... import jql, search
from ...errors import error_response
from ...ids import MAX_ID
from ...models.issue import STATUSES, Issue, find_issue
from ...rendering import jira_time
from . import BadJSON, bad_json_response, json_object
from ..query import RepeatedParameter, single
from .links import rest_url, user_url
from .metadata import issue_type_json, project_json, status_json

#: Page size when the client does not ask, and the most one page may hold. A larger request
#: is capped, and the response's ``maxResults`` says so (as Jira does).
DEFAULT_MAX_RESULTS = 50
MAX_RESULTS = 100

ISSUE_NOT_FOUND = "Issue does not exist or you do not have permission to see it."
#: What ``expand`` can add to an issue here (Jira lists more, e.g. changelog, which the demo
#: tracker does not keep): only what asking for would deliver.
ISSUE_EXPAND = "names,schema"
#: ``validateQuery`` values Jira accepts, and what each means here.
VALIDATE_MODES = {"true": "strict", "strict": "strict", "warn": "warn", "false": "none", "none": "none"}
SEARCH_BODY_KEYS = {"jql", "startAt", "maxResults", "fields", "validateQuery", "expand",
                    "properties", "fieldsByKeys"}


class BadParameter(Exception):
    def __init__(self, name: str, message: str) -> None:
        super().__init__(message)
        self.name = name


# --- Fields ---------------------------------------------------------------------------------


def _user(request: Request, issue: Issue) -> dict | None:
    user = issue.reporter
    if user is None:
        return None
    return {
        "self": user_url(request, user),
        "name": user.username,
        "key": user.username_key,
        "displayName": user.display_name,
        "active": user.active,
        "timeZone": "UTC",
    }


def _status(request: Request, issue: Issue) -> dict:
    return status_json(request, STATUSES[issue.status])


def _project(request: Request, issue: Issue) -> dict:
    return project_json(request, issue.project)


def _security(request: Request, issue: Issue) -> dict | None:
    level = issue.level
    if level.jira_id is None:
        return None  # Jira shows no level at all on an issue without one
    return {"id": level.jira_id, "name": level.title, "description": level.description}


@dataclass(frozen=True)
class Field:
    """One issue field: how ``/field`` describes it and how an issue's ``fields`` render it.
    ``clause_names`` are the JQL names :mod:`appserver.jql` understands for it (the ``jira``
    client maps them to field ids), ``searchable`` whether JQL can filter on it."""

    id: str
    name: str
    schema_type: str
    orderable: bool
    navigable: bool
    clause_names: tuple[str, ...]
    render: Callable[[Request, Issue], Any] | None  # None: not part of ``fields`` (the key)

    @property
    def searchable(self) -> bool:
        return any(name.lower() in jql.SEARCH_CLAUSES for name in self.clause_names)

    def describe(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "custom": False,
            "orderable": self.orderable,
            "navigable": self.navigable,
            "searchable": self.searchable,
            "clauseNames": list(self.clause_names),
            "schema": {"type": self.schema_type, "system": self.id},
        }


FIELDS: tuple[Field, ...] = (
    Field("issuekey", "Key", "string", False, True, ("issue", "issuekey", "key"), None),
    Field("summary", "Summary", "string", True, True, ("summary",), lambda r, i: i.summary),
    Field("description", "Description", "string", True, True, ("description",),
          lambda r, i: i.description),
    Field("status", "Status", "status", False, True, ("status",), _status),
    Field("issuetype", "Issue Type", "issuetype", True, True, (), lambda r, i: issue_type_json(r)),
    Field("project", "Project", "project", True, True, ("project",), _project),
    Field("reporter", "Reporter", "user", True, True, (), _user),
    # The demo tracker assigns no issue: null, as Jira answers for an unassigned one. Scripts
    # read ``issue.fields.assignee``, which the jira client raised AttributeError for while
    # the field was missing (an outside review).
    Field("assignee", "Assignee", "user", True, True, (), lambda r, i: None),
    Field("created", "Created", "datetime", False, True, ("created", "createdDate"),
          lambda r, i: jira_time(i.created_at)),
    Field("updated", "Updated", "datetime", False, True, ("updated", "updatedDate"),
          lambda r, i: jira_time(i.updated_at)),
    Field("security", "Security Level", "securitylevel", True, True, (), _security),
)
FIELDS_BY_ID = {field.id: field for field in FIELDS}


def select_fields(requested: Iterable[str], default: str) -> list[Field]:
    """Jira's ``fields`` parameter: ``*all``, ``*navigable``, field ids, and ``-id`` to
    leave one out; unknown ids are ignored (as Jira does)."""
    names = [name.strip() for name in requested if name.strip()] or [default]
    if all(name.startswith("-") for name in names):  # "-description": the default, less it
        names.insert(0, default)
    chosen: dict[str, Field] = {}
    for name in names:
        if name == "*all":
            chosen.update((f.id, f) for f in FIELDS)
        elif name == "*navigable":
            chosen.update((f.id, f) for f in FIELDS if f.navigable)
        elif name.startswith("-"):
            chosen.pop(name[1:], None)
        elif name in FIELDS_BY_ID:
            chosen[name] = FIELDS_BY_ID[name]
    for name in names:  # exclusions win, wherever they are written
        if name.startswith("-"):
            chosen.pop(name[1:], None)
    return [field for field in FIELDS if field.id in chosen and field.render is not None]


def names_and_schema(fields: list[Field], expand: set[str]) -> dict:
    extra: dict[str, Any] = {}
    if "names" in expand:
        extra["names"] = {field.id: field.name for field in fields}
    if "schema" in expand:
        extra["schema"] = {field.id: field.describe()["schema"] for field in fields}
    return extra


def issue_json(request: Request, issue: Issue, fields: list[Field], expand: set[str] = frozenset()) -> dict:
    data = {
        "expand": ISSUE_EXPAND,
        "id": str(issue.id),
        "self": rest_url(request, "rest.issue", version="2", id_or_key=str(issue.id)),
        "key": issue.key,
        "fields": {field.id: field.render(request, issue) for field in fields},
    }
    data.update(names_and_schema(fields, expand))
    return data


# --- Parameters -----------------------------------------------------------------------------


def _integer(name: str, value: Any, default: int) -> int:
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise BadParameter(name, f"'{name}' must be a whole number.")
    text = value.strip() if isinstance(value, str) else str(value)
    if not re.fullmatch(r"-?[0-9]+", text):
        raise BadParameter(name, f"The value '{text[:40]}' of '{name}' is not a whole number.")
    if text.startswith("-") and text.strip("-0"):
        raise BadParameter(name, f"'{name}' must not be negative (got {text[:40]}).")
    # Compared as text first: int() of thousands of digits is slow, and far beyond any id.
    if len(text.lstrip("-0")) > len(str(MAX_ID)) or int(text) > MAX_ID:
        # an offset beyond any INTEGER id: refused, not sent to the database
        raise BadParameter(name, f"'{name}' must be at most {MAX_ID}.")
    return int(text)


def _list(name: str, value: Any) -> list[str]:
    """A comma list given as one string, repeated parameters or a JSON list of strings."""
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(item, str) for item in items):
        raise BadParameter(name, f"'{name}' must be a string or a list of strings.")
    return [part.strip() for item in items for part in item.split(",") if part.strip()]


def _validate_mode(value: Any) -> str:
    if value is None or value == "":
        return "strict"
    if isinstance(value, bool):
        return "strict" if value else "none"
    mode = VALIDATE_MODES.get(str(value).strip().lower())
    if mode is None:
        raise BadParameter(
            "validateQuery", "'validateQuery' must be one of true, false, strict, warn or none."
        )
    return mode


@dataclass(frozen=True)
class SearchParameters:
    jql: str
    start_at: int
    max_results: int
    fields: list[str]
    validate: str
    expand: set[str]


def search_parameters(source: dict[str, Any]) -> SearchParameters:
    text = source.get("jql")
    if text is None:
        text = ""
    if not isinstance(text, str):
        raise BadParameter("jql", "'jql' must be a string.")
    return SearchParameters(
        jql=text,
        start_at=_integer("startAt", source.get("startAt"), 0),
        max_results=min(_integer("maxResults", source.get("maxResults"), DEFAULT_MAX_RESULTS),
                        MAX_RESULTS),
        fields=_list("fields", source.get("fields")),
        validate=_validate_mode(source.get("validateQuery")),
        expand=set(_list("expand", source.get("expand"))),
    )


def _from_query_string(request: Request) -> dict[str, Any]:
    params = request.GET
    found: dict[str, Any] = {}
    for name in ("jql", "startAt", "maxResults", "validateQuery"):
        if name in params:
            try:
                found[name] = single(params, name)
            except RepeatedParameter as error:
                raise BadParameter(name, str(error)) from None
    # Jira reads these as lists: given twice, both count.
    for name in ("fields", "expand"):
        if name in params:
            found[name] = params.getall(name)
    return found


def _bad_parameter(request: Request, error: BadParameter):
    return error_response(request, 400, [str(error)], errors={error.name: str(error)})


# --- Views ----------------------------------------------------------------------------------


@view_config(
    route_name="rest.search",
    request_method="GET",
    renderer="json",
    permission=NO_PERMISSION_REQUIRED,
)
def search_get(request: Request):
    try:
        parameters = search_parameters(_from_query_string(request))
    except BadParameter as error:
        return _bad_parameter(request, error)
    return _search(request, parameters)


@view_config(
    route_name="rest.search", request_method="POST", renderer="json", permission=NO_PERMISSION_REQUIRED,
    require_csrf=False,
)
def search_post(request: Request):
    try:
        body = json_object(request)
    except BadJSON as error:
        return bad_json_response(request, error)
    unknown = sorted(set(body) - SEARCH_BODY_KEYS)
    if unknown:
        return error_response(
            request, 400, [f"Unrecognized field '{unknown[0]}'."],
            errors={name: "not a search parameter" for name in unknown},
        )
    try:
        parameters = search_parameters(body)
    except BadParameter as error:
        return _bad_parameter(request, error)
    return _search(request, parameters)


def _search(request: Request, parameters: SearchParameters):
    try:
        query = search.parse(request, parameters.jql)
    except jql.JQLError as error:
        return error_response(request, 400, [str(error)])
    warnings: list[str] = []
    if parameters.validate != "none":
        problems = search.problems(request, query)
        if problems and parameters.validate == "strict":
            return error_response(request, 400, problems)
        warnings = problems
    try:
        result = search.run(request, query, parameters.start_at, parameters.max_results)
    except jql.SearchTimeout:
        return search.timeout_response(request)
    fields = select_fields(parameters.fields, "*navigable")
    body: dict[str, Any] = {
        "expand": "schema,names",
        "startAt": parameters.start_at,
        "maxResults": parameters.max_results,
        "total": result.total,
        "issues": [issue_json(request, issue, fields) for issue in result.issues],
    }
    if warnings:
        body["warningMessages"] = warnings
    body.update(names_and_schema(fields, parameters.expand))
    return body


@view_config(
    route_name="rest.issue",
    request_method="GET",
    renderer="json",
    permission=NO_PERMISSION_REQUIRED,
)
def issue(request: Request):
    found = find_issue(request.dbsession, request.matchdict["id_or_key"])
    if found is None or not request.has_permission("view", found):
        return error_response(request, 404, [ISSUE_NOT_FOUND])
    fields = select_fields(_list("fields", request.GET.getall("fields")), "*all")
    expand = set(_list("expand", request.GET.getall("expand")))
    return issue_json(request, found, fields, expand)


@view_config(
    route_name="rest.field",
    request_method="GET",
    renderer="json",
    permission=NO_PERMISSION_REQUIRED,
)
def field_list(request: Request) -> list[dict]:
    return [field.describe() for field in FIELDS]
