"""The demo issue tracker: projects and issues, each issue with a security level.

Who may see an issue is not decided here but by the security policy: every issue carries the
ACL of its security level (``__acl__``), and searches ask the policy which levels the caller
may view (:func:`viewable_levels`) and filter on those. A view never asks "is anyone logged
in?" itself.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from pyramid.authorization import Allow, Authenticated, Everyone
from pyramid.request import Request
from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text, UniqueConstraint, select
from sqlalchemy.orm import Mapped, Session, joinedload, mapped_column, relationship

from ..ids import parse_id
from .meta import Base, UTCDateTime
from .user import User

#: Issue keys look like ``DEMO-7``: a project key, a dash, the issue's number in its project.
KEY_PATTERN = re.compile(r"^([A-Z][A-Z0-9_]*)-([1-9][0-9]{0,8})$")


@dataclass(frozen=True)
class SecurityLevel:
    """Jira's "issue security level": who may view an issue. Also a Pyramid context (it has
    an ``__acl__``), so "may this request see issues of this level?" is a ``permits`` call."""

    name: str
    jira_id: str | None  # None: Jira shows no security level on the issue at all
    title: str
    description: str
    __acl__: tuple

    def __repr__(self) -> str:
        return f"<SecurityLevel {self.name}>"


PUBLIC = SecurityLevel(
    "public", None, "Public", "Anyone, including anonymous visitors, may view these issues.",
    ((Allow, Everyone, "view"),),
)
USERS = SecurityLevel(
    "users", "10000", "Logged-in users", "Only logged-in users may view these issues.",
    ((Allow, Authenticated, "view"),),
)
SECURITY_LEVELS: dict[str, SecurityLevel] = {level.name: level for level in (PUBLIC, USERS)}


def viewable_levels(request: Request) -> list[str]:
    """The security levels whose issues this request may view, as decided by the policy."""
    return [name for name, level in SECURITY_LEVELS.items() if request.has_permission("view", level)]


@dataclass(frozen=True)
class Status:
    """A workflow status with Jira's ids and status category (what clients colour by)."""

    name: str
    jira_id: str
    category_id: int
    category_key: str
    category_name: str
    category_color: str


STATUSES: dict[str, Status] = {
    status.name: status
    for status in (
        Status("Open", "1", 2, "new", "To Do", "blue-gray"),
        Status("In Progress", "3", 4, "indeterminate", "In Progress", "yellow"),
        Status("Resolved", "5", 3, "done", "Done", "green"),
        Status("Closed", "6", 3, "done", "Done", "green"),
    )
}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")

    def __repr__(self) -> str:
        return f"<Project {self.key}>"


class Issue(Base):
    __tablename__ = "issues"
    __table_args__ = (
        UniqueConstraint("project_key", "number"),
        CheckConstraint("security_level IN ('public', 'users')", name="security_level"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(48), unique=True)
    project_key: Mapped[str] = mapped_column(ForeignKey("projects.key", ondelete="CASCADE"))
    # The number after the dash, stored on its own so that DEMO-2 sorts before DEMO-10.
    number: Mapped[int] = mapped_column(Integer)
    summary: Mapped[str] = mapped_column(String(255))
    description: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(32))
    reporter_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), nullable=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    security_level: Mapped[str] = mapped_column(String(16), index=True)

    # Loaded explicitly (joinedload) by the queries that need them: no lazy N+1 queries.
    project: Mapped[Project] = relationship(lazy="raise")
    reporter: Mapped[User | None] = relationship(lazy="raise")

    @property
    def level(self) -> SecurityLevel:
        return SECURITY_LEVELS[self.security_level]

    @property
    def __acl__(self) -> tuple:
        """The issue is visible to whoever may view its security level."""
        return self.level.__acl__

    def __repr__(self) -> str:
        return f"<Issue {self.key}>"


def find_issue(db: Session, id_or_key: str) -> Issue | None:
    """The issue with this key (case-insensitive, ``demo-7``) or numeric id, with its project
    and reporter loaded. Visibility is the caller's business (ask ``has_permission``)."""
    value = id_or_key.strip()
    issue_id = parse_id(value)
    if issue_id is not None:
        where = Issue.id == issue_id
    elif KEY_PATTERN.match(value.upper()):
        where = Issue.key == value.upper()
    else:
        return None
    return db.scalar(
        select(Issue).options(joinedload(Issue.project), joinedload(Issue.reporter)).where(where)
    )
