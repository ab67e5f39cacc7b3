"""Alembic environment: the ini file that configures the app configures its migrations.

``alembic -c development.ini upgrade head`` and ``appserver development.ini initdb`` read
``sqlalchemy.url`` from ``[app:main]`` (with the same environment overrides as the app);
tests hand in an open connection through ``config.attributes["connection"]``.
"""
from __future__ import annotations

from alembic import context
from pyramid.paster import get_appsettings, setup_logging
from sqlalchemy import text

from appserver.models import get_engine, writer
from appserver.models.meta import metadata
from appserver.settings import apply_environment

config = context.config

#: The advisory lock key that serializes migrations of one PostgreSQL database.
MIGRATION_LOCK = 0x61707073  # "apps"


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # One transaction around every migration, on SQLite too (whose DDL is transactional,
        # though alembic does not assume it): alembic otherwise committed after each one, and
        # a second `initdb` waiting for the write lock could get it between two of them, read
        # the revision in between, and run the next migration again ("table personal_tokens
        # already exists": seen once in CI, with nine migrations to run).
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Two `initdb` at once (a deployment starting several machines): the second waits
            # here until the first has committed, then finds the database at head, instead of
            # creating the same tables again and failing on a duplicate.
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        run_migrations(connection)
        return
    if config.config_file_name:
        setup_logging(config.config_file_name)
    settings = dict(get_appsettings(config.config_file_name))
    apply_environment(settings)
    engine = get_engine(settings)
    # On SQLite the migration's transaction takes the write lock when it begins, so that a
    # second `initdb` waits for the first (busy timeout) instead of failing half-way.
    with writer(engine).connect() as connection:
        run_migrations(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
