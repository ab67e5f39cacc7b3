"""A value computed once per request and kept on the request itself."""
from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from pyramid.request import Request

T = TypeVar("T")


class RequestAttributeCache(Generic[T]):
    """The interface of Pyramid's ``RequestLocalCache`` (``get_or_create``, ``get``, ``set``), stored
    in the request's ``__dict__``: Pyramid's makes a weak reference on every read, and the
    security policy is read a dozen times per request. The value goes with the request."""

    def __init__(self, creator: Callable[[Request], T], name: str) -> None:
        self._creator = creator
        self._name = name

    def get_or_create(self, request: Request) -> T:
        try:
            return request.__dict__[self._name]
        except KeyError:
            value = request.__dict__[self._name] = self._creator(request)
            return value

    def get(self, request: Request, default: T | None = None) -> T | None:
        return request.__dict__.get(self._name, default)

    def set(self, request: Request, value: T) -> None:
        request.__dict__[self._name] = value
