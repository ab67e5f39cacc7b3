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
from typing import Any, Generic, TypeVar

from sqlalchemy import inspect
from sqlalchemy.orm import make_transient_to_detached
from sqlalchemy.sql.elements import Label

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
