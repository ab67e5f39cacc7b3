"""Who a request is served as, read-only: the account's public columns, without an ORM object.

A steady cookie request only shows who it is (``X-AUSERNAME``, the principals, ``GET
myself``). An :class:`Account` made from the row the session lookup read answers that; the
:class:`~appserver.models.User` object, which a view needs to change the account, is made only
when something asks for it (``request.user``). Where that object exists already, it is the
account (it has the same attributes, and any change a view made to it).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Account:
    id: int
    username: str
    username_key: str
    display_name: str
    email: str
    active: bool
    admin: bool

    @classmethod
    def from_row(cls, row: Sequence[Any], index: Mapping[str, int]) -> Account:
        """The account whose columns are at ``index[name]`` in ``row`` (a lookup's row)."""
        return cls(
            id=row[index["id"]],
            username=row[index["username"]],
            username_key=row[index["username_key"]],
            display_name=row[index["display_name"]],
            email=row[index["email"]],
            active=row[index["active"]],
            admin=row[index["admin"]],
        )
