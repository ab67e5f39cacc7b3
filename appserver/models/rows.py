"""ORM objects from a Core row, without the ORM's loading machinery.

A Core ``SELECT`` answered through a connection costs a fraction of the same query through
the ORM (a Session, its transaction, an identity map, a loader per entity): for the session
lookup, on every cookie request, that difference was about a third of the request. The
objects made here are *detached*, exactly as the ORM leaves the objects a unit of work
loaded once it closes: every column loaded, no pending change, an identity key, so that
:func:`appserver.models.units.attach` can hand them to the request's session without SQL.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.elements import Label

if TYPE_CHECKING:
    from .user import User

T = TypeVar("T")


class RowLoader(Generic[T]):
    """Every mapped column of ``cls`` as labelled Core columns for a ``select``, and the
    detached instance made from the row of such a select."""

    def __init__(self, cls: type[T], prefix: str) -> None:
        self.cls = cls
        self._manager = inspect(cls).class_manager
        attributes = inspect(cls).column_attrs
        self.keys = tuple(attribute.key for attribute in attributes)
        self.columns: tuple[Label[Any], ...] = tuple(
            attribute.columns[0].label(prefix + attribute.key) for attribute in attributes
        )

    def load(self, row: Sequence[Any], start: int = 0) -> T:
        """The instance whose columns are ``row[start:start + len(self.keys)]``."""
        instance = self._manager.new_instance()  # no __init__, no attribute events
        # The ORM's own loaders write loaded values into the instance's __dict__ like this;
        # make_transient_to_detached then marks every one of them committed (no history).
        instance.__dict__.update(zip(self.keys, row[start:start + len(self.keys)]))
        make_transient_to_detached(instance)
        return instance


class OwnedRowLoader(Generic[T]):
    """A row of ``cls`` joined with the account it belongs to (``cls.user``): the columns of
    both for a ``select``, and the pair of detached objects made from its row, the
    relationship set without SQL (a session, a personal access token)."""

    def __init__(self, cls: type[T], prefix: str) -> None:
        from .user import User

        self.item: RowLoader[T] = RowLoader(cls, prefix)
        self.owner: RowLoader[User] = RowLoader(User, "u_")
        self.columns = (*self.item.columns, *self.owner.columns)
        #: Where each attribute's value is in the row: ``row[item_index["id"]]`` without
        #: making the objects.
        self.item_index = {key: position for position, key in enumerate(self.item.keys)}
        self.owner_index = {key: len(self.item.keys) + position for position, key in enumerate(self.owner.keys)}

    def load(self, row: Sequence[Any]) -> tuple[T, User]:
        item = self.item.load(row)
        owner = self.owner.load(row, len(self.item.keys))
        set_committed_value(item, "user", owner)
        return item, owner
