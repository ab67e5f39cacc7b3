"""Query parameters that take one value.

WebOb's ``request.GET.get`` answers the last of a repeated parameter, Jira (JAX-RS) the
first: ``?username=alice&username=fred`` set fred's password where a Jira client meant
alice's (an outside review). Neither guess is safe, so a repeated one is a 400 that names
it, as a repeated ``os_authType`` is.
"""
from __future__ import annotations

from collections.abc import Iterable

from pyramid.request import Request
from pyramid.response import Response
from webob.multidict import MultiDict

from ..errors import error_response


class RepeatedParameter(ValueError):
    def __init__(self, name: str, count: int, message: str = "") -> None:
        super().__init__(message or f"Give the query parameter '{name}' once: it was given {count} times.")
        self.name = name


def single(params: MultiDict, name: str, default: str = "") -> str:
    """The one value of ``name`` (``default`` without one); RepeatedParameter if repeated."""
    values = params.getall(name)
    if len(values) > 1:
        raise RepeatedParameter(name, len(values))
    return values[0] if values else default


def repeated_response(
    request: Request, error: RepeatedParameter, actions: Iterable[tuple[str, str]] = ()
) -> Response:
    """The 400 that names the parameter: Jira's JSON under /rest, a page elsewhere."""
    return error_response(
        request, 400, [str(error)], errors={error.name: "given more than once"}, actions=actions
    )
