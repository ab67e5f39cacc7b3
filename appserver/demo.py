"""Demo data for ``appserver CONFIG initdb --demo``: idempotent, safe to run again."""
from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

from pyramid.request import Request
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from .models import Issue, Project, User, canonical_username
from .models.issue import PUBLIC, USERS
from .security.accounts import validate_new_password, validate_username
from .security.password_policy import context_words
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
    """The account named ``username``, created if missing: the one way accounts are made
    (command line, admin form, demo data), so the username and password rules apply to
    all of them (:class:`~appserver.security.accounts.AccountError` when broken)."""
    user = find_user(request, username)
    if user is not None:
        return user, False
    username = validate_username(username)
    validate_new_password(request, password, context=context_words(username, display_name, email))
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
    try:
        # In a savepoint: an administrator's double submit, or two of them at once, may both
        # have found the name free; the one whose INSERT comes second meets the unique key
        # (PostgreSQL waits for the first to commit) and finds the account the other made.
        with request.dbsession.begin_nested():
            request.dbsession.add(user)
    except IntegrityError as error:
        if "username_key" not in str(error.orig):
            raise
        return find_user(request, username), False
    return user, True


def seed_demo(request: Request) -> Iterator[str]:
    for username, password, display_name, email, admin in DEMO_USERS:
        _, created = ensure_user(request, username, password, display_name, email, admin)
        yield f"demo user {username!r}: {'created' if created else 'already there'}"
    yield from seed_issues(request)


# --- The demo issue tracker: project DEMO, issues DEMO-1 ... DEMO-200, 5 of them public ---

DEMO_PROJECT = ("DEMO", "Demo project", "The seed's example: 200 issues, 5 of them public.")
DEMO_ISSUE_COUNT = 200
#: DEMO-1, DEMO-41, DEMO-81, DEMO-121 and DEMO-161: the only issues anonymous visitors see.
DEMO_PUBLIC_EVERY = 40
DEMO_EPOCH = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)

_VERBS = ["Fix", "Improve", "Document", "Investigate", "Refactor", "Add tests for", "Speed up"]
_SUBJECTS = [
    "the login form", "session cookie expiry", "the REST search", "password reset mails",
    "the admin user list", "issue list pagination", "Basic authentication", "remember-me tokens",
    "the audit log", "database migrations", "the CSV export", "email notifications",
    "the account page",
]
_CONTEXTS = [
    "in Firefox", "under load", "after an upgrade", "for anonymous users", "on PostgreSQL",
    "on SQLite", "behind a reverse proxy", "with long usernames", "in the nightly build",
    "for administrators", "on slow networks",
]
_SYMPTOMS = [
    "The page shows a blank screen and the log contains a traceback.",
    "Requests time out after 30 seconds.",
    "Users report that they are logged out unexpectedly.",
    "The response is correct but takes several seconds.",
    "Error messages are unclear and do not say what to do next.",
    "The behaviour differs between browsers.",
    "Nothing is written to the audit log.",
]
_STATUS_CYCLE = ["Open", "In Progress", "Open", "Resolved", "Closed", "Open", "In Progress", "Resolved"]
_REPORTERS = ["fred", "alice", "admin"]


def demo_issue_fields(number: int) -> dict:
    """The deterministic content of issue ``DEMO-<number>``: every run seeds the same data,
    with varied words (for ``text ~``), statuses and times (for ``ORDER BY``)."""
    verb = _VERBS[number % len(_VERBS)]
    subject = _SUBJECTS[(number * 5) % len(_SUBJECTS)]
    context = _CONTEXTS[(number * 3) % len(_CONTEXTS)]
    symptom = _SYMPTOMS[(number * 2) % len(_SYMPTOMS)]
    created = DEMO_EPOCH + timedelta(hours=31 * (number - 1), minutes=(number * 37) % 60)
    updated = created + timedelta(days=(number * 13) % 45, hours=(number * 7) % 24)
    return {
        "summary": f"{verb} {subject} {context}",
        "description": f"{symptom} Seen {context} while working on {subject}. "
        f"Steps to reproduce are in the attached notes (demo issue {number}).",
        "status": _STATUS_CYCLE[(number + number // DEMO_PUBLIC_EVERY) % len(_STATUS_CYCLE)],
        "reporter": _REPORTERS[number % len(_REPORTERS)],
        "created_at": created,
        "updated_at": updated,
        "security_level": PUBLIC.name if number % DEMO_PUBLIC_EVERY == 1 else USERS.name,
    }


def seed_issues(request: Request) -> Iterator[str]:
    """Create project DEMO and whichever of its 200 issues are missing (idempotent)."""
    db = request.dbsession
    key, name, description = DEMO_PROJECT
    project = db.scalar(select(Project).where(Project.key == key))
    if project is None:
        db.add(Project(key=key, name=name, description=description))
        db.flush()
    existing = set(db.scalars(select(Issue.number).where(Issue.project_key == key)))
    reporters = {username: find_user(request, username) for username in _REPORTERS}
    missing = [n for n in range(1, DEMO_ISSUE_COUNT + 1) if n not in existing]
    for number in missing:
        fields = demo_issue_fields(number)
        reporter = reporters[fields.pop("reporter")]
        db.add(
            Issue(
                key=f"{key}-{number}",
                project_key=key,
                number=number,
                reporter_id=reporter.id if reporter is not None else None,
                **fields,
            )
        )
    db.flush()
    public = sum(1 for n in range(1, DEMO_ISSUE_COUNT + 1) if n % DEMO_PUBLIC_EVERY == 1)
    if missing:
        yield f"demo project {key}: {len(missing)} issues created ({public} of {DEMO_ISSUE_COUNT} public)"
    else:
        yield f"demo project {key}: {DEMO_ISSUE_COUNT} issues already there"
