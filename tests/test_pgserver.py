"""tests/pgserver.py: the private PostgreSQL cluster that fault tests restart (never the
shared server). Runs when TEST_DATABASE_URL is set, like every PostgreSQL test; in CI
(APPSERVER_REQUIRE_ALL_TESTS=1) missing PostgreSQL binaries are a failure, not a skip."""
from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from .pgserver import PostgresServer
from .support import require_private_postgres


def test_private_cluster_restarts_on_its_port_keeps_its_data_and_is_deleted():
    require_private_postgres()
    server = PostgresServer()
    assert server.port != 5432
    server.start()
    try:
        url = server.url("pgserver_check")
        assert f":{server.port}/pgserver_check" in url
        engine = create_engine(url)
        with engine.begin() as connection:
            connection.execute(text("CREATE TABLE kept (value int)"))
            connection.execute(text("INSERT INTO kept VALUES (42)"))
        server.restart()
        engine.dispose()  # the pooled connections died with the old server
        with engine.connect() as connection:
            assert connection.execute(text("SELECT value FROM kept")).scalar() == 42
        server.stop()
        assert not server.is_running()
        with pytest.raises(Exception):
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        server.start()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar() == 1
        engine.dispose()
    finally:
        base = server.base
        server.cleanup()
    assert not Path(base).exists()
    server.cleanup()  # twice is harmless
