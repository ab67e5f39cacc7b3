"""Loading 10^5 users, 10^6 sessions and 10^6 audit events into PostgreSQL with COPY."""
from __future__ import annotations

import hashlib
import random
from datetime import datetime, timedelta, timezone

import psycopg
from sqlalchemy import make_url

from appserver.security.passwords import make_context

PASSWORD = "bulk-user-password"  # every bulk user's


def libpq_url(url: str) -> str:
    """psycopg's own connection string for a SQLAlchemy URL."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def load(url: str, *, users: int, sessions: int, events: int, seed: int = 11) -> None:
    """Add ``users`` accounts, ``sessions`` expired sessions spread over them and ``events``
    audit events, then ANALYZE. Sessions are expired so that purge-sessions has 10^6 rows to
    delete; a lookup by token hash costs the same for a live or an expired row."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    password_hash = make_context().hash(PASSWORD)  # one hash: argon2 x 10^5 is hours
    with psycopg.connect(libpq_url(url)) as connection:
        with connection.cursor() as cursor:
            first_id = cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM users").fetchone()[0]
            with cursor.copy(
                "COPY users (id, username, username_key, display_name, email, password_hash, active, admin,"
                " created_at, password_changed_at, login_count, current_failed_logins, total_failed_logins)"
                " FROM STDIN"
            ) as copy:
                for n in range(users):
                    name = f"bulk{n:06d}"
                    copy.write_row((first_id + n, name, name, f"Bulk User {n}", f"{name}@example.com",
                                    password_hash, True, False, now, now, 0, 0, 0))
            cursor.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), (SELECT max(id) FROM users))")
            with cursor.copy(
                "COPY sessions (token_hash, user_id, created_at, last_seen_at, expires_at, user_agent, remote_addr)"
                " FROM STDIN"
            ) as copy:
                for n in range(sessions):
                    started = now - timedelta(days=2, seconds=rng.randrange(86400))
                    copy.write_row((hashlib.sha256(f"bulk-session-{n}".encode()).hexdigest(),
                                    first_id + rng.randrange(users), started, started,
                                    started + timedelta(hours=12), "bulk/1.0", "127.0.0.1"))
            with cursor.copy(
                "COPY auth_events (occurred_at, event, user_id, detail, remote_addr, user_agent) FROM STDIN"
            ) as copy:
                for n in range(events):
                    copy.write_row((now - timedelta(seconds=rng.randrange(30 * 86400)), "login.succeeded",
                                    first_id + rng.randrange(users), "basic", "127.0.0.1", "bulk/1.0"))
        connection.commit()
        connection.autocommit = True
        connection.execute("ANALYZE")


def count(url: str, table: str) -> int:
    with psycopg.connect(libpq_url(url)) as connection:
        return connection.execute(f"SELECT count(*) FROM {table}").fetchone()[0]  # noqa: S608 (our names)
