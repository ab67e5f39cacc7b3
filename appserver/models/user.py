"""Accounts. Passwords are hashed by :mod:`appserver.security.passwords`, never here."""
from __future__ import annotations

import unicodedata
from datetime import datetime

from sqlalchemy import Boolean, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UTCDateTime

USERNAME_MAX_LENGTH = 255


def canonical_username(username: str) -> str:
    """The case-insensitive lookup key: ``Fred``, ``FRED`` and ``ｆｒｅｄ`` are one account."""
    return unicodedata.normalize("NFKC", username).casefold().strip()


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH))
    username_key: Mapped[str] = mapped_column(String(USERNAME_MAX_LENGTH), unique=True)
    display_name: Mapped[str] = mapped_column(String(255))
    email: Mapped[str] = mapped_column(String(255), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    password_changed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    login_count: Mapped[int] = mapped_column(Integer, default=0)
    current_failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    total_failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    previous_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Failed logins in the hour that began at ``window_started_at``, which a right password
    #: does not reset (``current_failed_logins`` it does): appserver.login.max_failures_per_hour.
    window_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    window_failed_logins: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<User {self.id} {self.username!r}>"
