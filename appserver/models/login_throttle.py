"""Failure counts for usernames that have no account.

Known accounts count failures on ``users``; unknown names count here, so that a locked-out
answer cannot tell an attacker which usernames exist. Keyed by a hash of the canonical name:
people sometimes type their password into the username field.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UTCDateTime


class LoginThrottle(Base):
    __tablename__ = "login_throttles"

    name_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    current_failed_logins: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_login_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
