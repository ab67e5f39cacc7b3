"""``/rest/pat/latest/tokens`` (and ``/rest/pat/1/tokens``): Jira's personal access token
resource (``TokensResource``). List your own tokens, create one (the raw token is in that
201 answer only), read one (the owner, or an administrator), revoke one (204)."""
from __future__ import annotations

from typing import Any

from pyramid.httpexceptions import HTTPNoContent
from pyramid.request import Request
from pyramid.view import view_config, view_defaults

from ...errors import error_response
from ...ids import parse_id
from ...models import PersonalToken, User
from ...rendering import jira_time
from ...security import personal_tokens, websudo
from ...security.personal_tokens import TokenRequestError
from . import BadJSON, bad_json_response, json_object

NOT_FOUND = "Personal access token not found."


def token_json(request: Request, token: PersonalToken, owner: User) -> dict[str, Any]:
    """Jira's ``RestToken`` (without ``rawToken``)."""
    return {
        "id": token.id,
        "name": token.name,
        "createdAt": jira_time(token.created_at),
        "expiringAt": jira_time(token.expires_at),
        "lastAccessedAt": jira_time(token.last_accessed_at),
        "userProfileResource": {"username": owner.username, "userKey": owner.username_key},
    }


def _token_id(request: Request) -> int | None:
    """None: not an id any token could have (and PostgreSQL's INTEGER would refuse it)."""
    return parse_id(request.matchdict["id"])


@view_defaults(renderer="json", permission="account", require_csrf=False)
class TokensResource:
    def __init__(self, request: Request) -> None:
        self.request = request

    @view_config(route_name="rest.tokens", request_method="GET")
    def list_tokens(self):
        request, user = self.request, self.request.user
        return [token_json(request, token, user) for token in request.token_store.listed(user.id)]

    @view_config(route_name="rest.tokens", request_method="POST")
    def create(self):
        request = self.request
        refused = websudo.require(request, recent_password=True)
        if refused is not None:
            return refused
        try:
            body = json_object(request)
        except BadJSON as error:
            return bad_json_response(request, error)
        try:
            issued = personal_tokens.create(
                request, request.user, body.get("name"), body.get("expirationDuration")
            )
        except TokenRequestError as error:  # MintedByToken too: a 403
            errors = {error.field: str(error)} if error.field else {}
            return error_response(request, error.status, [str(error)], errors=errors)
        request.response.status = 201
        return {**token_json(request, issued.token, request.user), "rawToken": issued.raw}

    def _find(self) -> tuple[PersonalToken, User] | None:
        """The token, if the caller may see it: its owner, or an administrator."""
        request = self.request
        token_id = _token_id(request)
        token = request.token_store.get(token_id) if token_id is not None else None
        if token is None:
            return None
        user = request.user
        if token.user_id == user.id:
            return token, user
        if user.admin:
            return token, request.dbsession.get(User, token.user_id)
        return None

    @view_config(route_name="rest.token", request_method="GET")
    def get(self):
        request = self.request
        found = self._find()
        if found is None:
            return error_response(request, 404, [NOT_FOUND])
        token, owner = found
        if owner.id != request.user.id:
            refused = websudo.require(request)  # another user's token: administrator's work
            if refused is not None:
                return refused
        return token_json(request, token, owner)

    @view_config(route_name="rest.token", request_method="DELETE")
    def delete(self):
        """204 for unknown ids too (as Jira): the answer tells nothing about others' tokens."""
        request = self.request
        found = self._find()
        if found is not None:
            token, owner = found
            if owner.id != request.user.id:
                refused = websudo.require(request)
                if refused is not None:
                    return refused
            by = "" if owner.id == request.user.id else request.user.username
            personal_tokens.revoke(request, token, owner, by=by)
        return HTTPNoContent()
