"""Resources and their ACLs: who may do what is declared here, decided by the policy."""
from __future__ import annotations

from pyramid.authorization import ALL_PERMISSIONS, Allow, Authenticated
from pyramid.request import Request

from .security.policy import ADMIN


class Root:
    """Default context: ``account`` needs a login; admins may do everything.

    Public pages and resources (the home and login pages, issues, search, serverInfo)
    declare ``NO_PERMISSION_REQUIRED``: anyone may see them, so no permission is asked on
    every request. Which issues a request sees is decided per issue (their security levels'
    ACLs, appserver/models/issue.py)."""

    __acl__ = [
        (Allow, ADMIN, ALL_PERMISSIONS),
        (Allow, Authenticated, "account"),
    ]

    def __init__(self, request: Request) -> None:
        # No reference to the request: request.root -> Root -> request would be a cycle,
        # which only the garbage collector frees (see docs/performance.md).
        pass
