"""The migrations themselves (issue 2): from an empty database up to head, down to base and
up again, one revision at a time; and the models' metadata is exactly what the migrations
build (alembic's autogenerate comparison finds nothing to do). On a scratch database of each
kind, never the one the other tests use."""
from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect
from sqlalchemy.engine import Engine

from appserver.models import get_engine, metadata

from .conftest import DATABASES
from .support import alembic_config, reset_database, sibling_database

APP_TABLES = set(metadata.tables)


@pytest.fixture(params=DATABASES)
def scratch_engine(request, tmp_path) -> Iterator[Engine]:
    if request.param == "postgresql":
        url = sibling_database(os.environ["TEST_DATABASE_URL"], "migrations")
    else:
        url = f"sqlite:///{tmp_path / 'migrations.sqlite'}"
    engine = get_engine({"sqlalchemy.url": url})
    reset_database(engine)
    yield engine
    reset_database(engine)
    engine.dispose()


def run(engine: Engine, direction: str, revision: str) -> None:
    with engine.begin() as connection:
        getattr(command, direction)(alembic_config(connection), revision)


def tables(engine: Engine) -> set[str]:
    return set(inspect(engine).get_table_names())


def current(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def revisions() -> list[str]:
    """Every revision id, oldest first."""
    script = ScriptDirectory.from_config(alembic_config())
    return [rev.revision for rev in reversed(list(script.walk_revisions()))]


def test_revisions_are_one_linear_history():
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1
    ids = revisions()
    assert ids[0] == "0001"
    assert ids == sorted(ids)


def test_upgrade_from_empty_downgrade_to_base_upgrade_again(scratch_engine):
    assert tables(scratch_engine) == set()
    head = revisions()[-1]

    run(scratch_engine, "upgrade", "head")
    assert tables(scratch_engine) == APP_TABLES | {"alembic_version"}
    assert current(scratch_engine) == head

    run(scratch_engine, "downgrade", "base")
    assert tables(scratch_engine) - {"alembic_version"} == set()
    assert current(scratch_engine) is None

    run(scratch_engine, "upgrade", "head")
    assert tables(scratch_engine) == APP_TABLES | {"alembic_version"}
    assert current(scratch_engine) == head


def test_every_revision_upgrades_and_downgrades_on_its_own(scratch_engine):
    seen: list[set[str]] = [tables(scratch_engine)]
    for revision in revisions():
        run(scratch_engine, "upgrade", revision)
        assert current(scratch_engine) == revision
        seen.append(tables(scratch_engine))
    for revision, before in zip(reversed(revisions()), reversed(seen[:-1])):
        assert current(scratch_engine) == revision
        run(scratch_engine, "downgrade", "-1")
        assert tables(scratch_engine) - {"alembic_version"} == before - {"alembic_version"}
    assert current(scratch_engine) is None


def test_the_models_match_the_migrations(scratch_engine):
    run(scratch_engine, "upgrade", "head")
    with scratch_engine.connect() as connection:
        context = MigrationContext.configure(
            connection, opts={"compare_type": True, "compare_server_default": True}
        )
        differences = compare_metadata(context, metadata)
    assert differences == []


def test_every_migration_runs_in_one_transaction(scratch_engine):
    """On SQLite alembic committed after each migration (it does not assume transactional
    DDL): a second `initdb`, waiting for the write lock, could get it between two of them,
    read the revision in between and run the next migration again (CI saw "table
    personal_tokens already exists" once). One transaction: the second waits for all."""
    from sqlalchemy import event

    commits: list[int] = []
    event.listen(scratch_engine, "commit", lambda connection: commits.append(1))
    with scratch_engine.connect() as connection:
        command.upgrade(alembic_config(connection), "head")
        if connection.in_transaction():
            connection.commit()
    assert len(commits) == 1
    assert APP_TABLES <= set(inspect(scratch_engine).get_table_names())
