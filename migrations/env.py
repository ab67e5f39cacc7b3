"""Alembic environment: the ini file that configures the app configures its migrations.

``alembic -c development.ini upgrade head`` and ``appserver development.ini initdb`` read
``sqlalchemy.url`` from ``[app:main]`` (with the same environment overrides as the app);
tests hand in an open connection through ``config.attributes["connection"]``.
"""
from __future__ import annotations

from alembic import context
from pyramid.paster import get_appsettings, setup_logging

from appserver.models import get_engine
from appserver.models.meta import metadata
from appserver.settings import apply_environment

config = context.config


def run_migrations(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
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
    with engine.connect() as connection:
        run_migrations(connection)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
