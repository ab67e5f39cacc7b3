"""``/rest/api/2/project``, ``/status`` and ``/issuetype``: what an issue's fields point at.

Jira nests each of them in an issue with a ``self`` link, and clients go by that link: the
``jira`` library makes a ``Project``, ``Status`` or ``IssueType`` of a nested object whose
``self`` ends in ``project/<id>`` (and ``print(issue.fields.status)`` then prints its name);
without one it made an anonymous holder that prints as ``<PropertyHolder object at ...>``.
The links lead here. The demo's metadata is public, as Jira shows it to anyone who may see
an issue of the project (the anonymous see five).
"""
from __future__ import annotations

import re

from pyramid.request import Request
from pyramid.security import NO_PERMISSION_REQUIRED
from pyramid.view import view_config
from sqlalchemy import select

from ...errors import error_response
from ...ids import parse_id
from ...models.issue import STATUSES, Project, Status
from .links import rest_url

#: Jira's project keys: a letter, then letters, digits or underscores.
PROJECT_KEY = re.compile(r"[A-Z][A-Z0-9_]{0,31}")

#: The demo's one issue type (Jira's built-in Task).
TASK_ID = "3"
_TASK = {"id": TASK_ID, "name": "Task", "description": "A task that needs to be done.", "subtask": False}


def status_json(request: Request, status: Status) -> dict:
    return {
        "self": rest_url(request, "rest.status", version="2", id_or_name=status.jira_id),
        "description": "",
        "name": status.name,
        "id": status.jira_id,
        "statusCategory": {
            "id": status.category_id,
            "key": status.category_key,
            "colorName": status.category_color,
            "name": status.category_name,
        },
    }


def issue_type_json(request: Request) -> dict:
    return {"self": rest_url(request, "rest.issuetype", version="2", id=TASK_ID), **_TASK}


def project_json(request: Request, project: Project, *, full: bool = False) -> dict:
    data = {
        "self": rest_url(request, "rest.project", version="2", id_or_key=str(project.id)),
        "id": str(project.id),
        "key": project.key,
        "name": project.name,
        "projectTypeKey": "software",
    }
    if full:
        data["description"] = project.description
        data["issueTypes"] = [issue_type_json(request)]
    return data


@view_config(route_name="rest.statuses", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def statuses(request: Request) -> list[dict]:
    return [status_json(request, status) for status in STATUSES.values()]


@view_config(route_name="rest.status", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def status(request: Request):
    wanted = request.matchdict["id_or_name"]
    for candidate in STATUSES.values():  # by id, or by name as Jira allows
        if wanted == candidate.jira_id or wanted.lower() == candidate.name.lower():
            return status_json(request, candidate)
    return error_response(request, 404, [f"The status with id '{wanted}' does not exist"])


@view_config(route_name="rest.issuetypes", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def issue_types(request: Request) -> list[dict]:
    return [issue_type_json(request)]


@view_config(route_name="rest.issuetype", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def issue_type(request: Request):
    if request.matchdict["id"] != TASK_ID:
        return error_response(request, 404, [f"The issue type with id '{request.matchdict['id']}' does not exist"])
    return issue_type_json(request)


@view_config(route_name="rest.projects", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def projects(request: Request) -> list[dict]:
    return [project_json(request, project)
            for project in request.dbsession.scalars(select(Project).order_by(Project.key))]


@view_config(route_name="rest.project", request_method="GET", renderer="json",
             permission=NO_PERMISSION_REQUIRED)
def project(request: Request):
    wanted = request.matchdict["id_or_key"]
    found = None
    if wanted.isdigit():
        project_id = parse_id(wanted)  # beyond an INTEGER names nothing (and is no 500)
        if project_id is not None:
            found = request.dbsession.get(Project, project_id)
        missing = f"No project could be found with id '{wanted}'."
    else:
        if PROJECT_KEY.fullmatch(wanted.upper()):  # anything else (a NUL, say) names nothing
            found = request.dbsession.scalar(select(Project).where(Project.key == wanted.upper()))
        missing = f"No project could be found with key '{wanted}'."
    if found is None:
        return error_response(request, 404, [missing])
    return project_json(request, found, full=True)
