"""The audit trail of authentication. Never holds a password or a token."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from .meta import Base, UTCDateTime


class AuthEvent(Base):
    __tablename__ = "auth_events"
    # The collapse look-up: the newest identical event of a user (appserver.security.audit).
    __table_args__ = (Index("ix_auth_events_event_user_id_occurred_at", "event", "user_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    event: Mapped[str] = mapped_column(String(40))
    user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True
    )
    detail: Mapped[str] = mapped_column(String(255), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    #: Identical events after this one within the collapse interval, counted here instead
    #: of written as rows; ``last_occurred_at`` is the latest of them.
    repeats: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    last_occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
