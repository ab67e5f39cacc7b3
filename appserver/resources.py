"""Resources and their ACLs: who may do what is declared here, decided by the policy."""
from __future__ import annotations

from pyramid.authorization import ALL_PERMISSIONS, Allow, Authenticated, Everyone
from pyramid.request import Request

from .security.policy import ADMIN


class Root:
    """Default context: everyone may view public pages; ``account`` needs a login; admins
    may do everything."""

    __acl__ = [
        (Allow, ADMIN, ALL_PERMISSIONS),
        (Allow, Everyone, "view"),
        (Allow, Authenticated, "account"),
    ]

    def __init__(self, request: Request) -> None:
        self.request = request
