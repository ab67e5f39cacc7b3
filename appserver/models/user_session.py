"""Server-side login sessions: one row per login, looked up by the SHA-256 of the cookie."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .meta import Base, UTCDateTime
from .user import User


class UserSession(Base):
    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Only the hash is stored: a database dump holds no usable token.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    user_agent: Mapped[str] = mapped_column(String(512), default="")
    remote_addr: Mapped[str] = mapped_column(String(64), default="")
    #: When this session last confirmed its password for administration (WebSudo), or last
    #: used that confirmation (it rolls); None: not elevated. In the database, so every
    #: process sees it.
    websudo_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: The session a rotation started in place of this one, in the same browser: a log-out
    #: that presents this session ends that one too (it may overlap the rotation). No
    #: foreign key: a purged successor is simply not followed (migration 0007).
    replaced_by_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: When this browser's login last checked the password (the login itself, a WebSudo
    #: confirmation, a password change); rotations carry it over. None: started by a
    #: remember-me cookie. Making a token asks for it to be recent (websudo.require).
    password_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"<UserSession {self.id} user={self.user_id}>"
