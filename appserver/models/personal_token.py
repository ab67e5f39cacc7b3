"""Personal access tokens (Jira's PATs): a long-lived credential a person makes for a REST
client and sends as ``Authorization: Bearer``. Only the SHA-256 of the token's secret is
stored; the raw token is shown once, when it is made."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .meta import Base, UTCDateTime
from .user import User


class PersonalToken(Base):
    __tablename__ = "personal_tokens"
    #: An id is never used twice, on SQLite too (migration 0009): a token's id is part of
    #: the raw token, and the account page's resent form is told by ids made after it.
    __table_args__ = {"sqlite_autoincrement": True}

    #: Part of the raw token: the lookup is by primary key, then the secret's hash is compared.
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    #: None: the token never expires (only when appserver.tokens.allow_no_expiry is on).
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    last_accessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    #: Revoked tokens are kept (hidden) so a refusal can say "revoked" in the audit trail.
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

    user: Mapped[User] = relationship(lazy="raise")

    def __repr__(self) -> str:
        return f"<PersonalToken {self.id} user={self.user_id}>"
