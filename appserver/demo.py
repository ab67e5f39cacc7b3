"""Demo data for ``appserver CONFIG initdb --demo``: idempotent, safe to run again."""
from __future__ import annotations

from collections.abc import Iterator

from pyramid.request import Request

from .models import User, canonical_username
from .security.login import find_user

#: (username, password, display name, email, admin). Shown in the README.
DEMO_USERS = [
    ("admin", "admin-password", "Ada Admin", "admin@example.com", True),
    ("fred", "fred-password", "Fred Developer", "fred@example.com", False),
    ("alice", "alice-password", "Alice Tester", "alice@example.com", False),
]


def ensure_user(
    request: Request, username: str, password: str, display_name: str, email: str, admin: bool
) -> tuple[User, bool]:
    user = find_user(request, username)
    if user is not None:
        return user, False
    now = request.now
    user = User(
        username=username,
        username_key=canonical_username(username),
        display_name=display_name,
        email=email,
        password_hash=request.passwords.hash(password),
        active=True,
        admin=admin,
        created_at=now,
        password_changed_at=now,
        login_count=0,
        current_failed_logins=0,
        total_failed_logins=0,
    )
    request.dbsession.add(user)
    request.dbsession.flush()
    return user, True


def seed_demo(request: Request) -> Iterator[str]:
    for username, password, display_name, email, admin in DEMO_USERS:
        _, created = ensure_user(request, username, password, display_name, email, admin)
        yield f"demo user {username!r}: {'created' if created else 'already there'}"
