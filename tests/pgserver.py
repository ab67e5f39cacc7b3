"""A private, throwaway PostgreSQL cluster for tests that must stop or restart the database.

The machine's shared PostgreSQL (127.0.0.1:5432) belongs to everybody else: a test that
restarts *that* would break other engineers' runs and CI. ``PostgresServer`` instead runs
``initdb`` into a temporary directory and ``pg_ctl`` on a free loopback port, with trust
authentication, so a test may stop, restart or kill it at will::

    from tests.pgserver import PostgresServer, find_bindir

    with PostgresServer() as pg:          # initdb + start (a few seconds)
        url = pg.url("appserver")         # creates the database, returns a SQLAlchemy URL
        pg.restart()                      # same port, same data
    # stopped and deleted here

PostgreSQL refuses to run as root: when the tests run as root, every server command runs as
the ``postgres`` OS user (Debian's packages create it), which then owns the data directory.
The binaries come from ``$APPSERVER_PG_BINDIR``, else the newest Debian
``/usr/lib/postgresql/<version>/bin``, else ``pg_ctl`` on the PATH (``find_bindir()``).
"""
from __future__ import annotations

import atexit
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

BINDIR_VARIABLE = "APPSERVER_PG_BINDIR"
RUN_AS_WHEN_ROOT = "postgres"


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server binaries (initdb, pg_ctl) on this machine."""


def find_bindir() -> Path | None:
    """The directory holding initdb and pg_ctl, or None when PostgreSQL is not installed."""
    candidates: list[Path] = []
    if os.environ.get(BINDIR_VARIABLE):
        candidates.append(Path(os.environ[BINDIR_VARIABLE]))
    debian = Path("/usr/lib/postgresql")
    if debian.is_dir():
        versions = [p for p in debian.iterdir() if p.name.isdigit()]
        candidates += [p / "bin" for p in sorted(versions, key=lambda p: int(p.name), reverse=True)]
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if (directory / "initdb").exists() and (directory / "pg_ctl").exists():
            return directory
    return None


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class PostgresServer:
    """One private PostgreSQL cluster: ``start()``, ``stop()``, ``restart()``, ``url()``,
    ``cleanup()`` (also a context manager, and cleaned up at interpreter exit)."""

    host = "127.0.0.1"

    def __init__(self, bindir: Path | None = None, port: int | None = None) -> None:
        found = bindir or find_bindir()
        if found is None:
            raise PostgresUnavailable(
                f"PostgreSQL's initdb/pg_ctl not found: install postgresql or set {BINDIR_VARIABLE}"
            )
        self.bindir = Path(found)
        self.port = port or free_port(self.host)
        self.user = RUN_AS_WHEN_ROOT if os.geteuid() == 0 else None
        self.base = Path(tempfile.mkdtemp(prefix="appserver-pg-"))
        self.datadir = self.base / "data"
        self.logfile = self.base / "postgresql.log"
        self._initialized = False
        self._cleaned = False
        if self.user is not None:
            entry = pwd.getpwnam(self.user)  # KeyError: no such OS user to run PostgreSQL as
            os.chown(self.base, entry.pw_uid, entry.pw_gid)
        atexit.register(self.cleanup)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start it and wait until it accepts connections."""
        if not self._initialized:
            self._initdb()
        self._pg_ctl("start", "-w", "-t", "60", "-l", str(self.logfile))
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: ``fast`` (disconnect clients, clean shutdown) or ``immediate``
        (like a crash: recovery runs on the next start)."""
        self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port with the same data."""
        self.stop(mode)
        self.start()

    def is_running(self) -> bool:
        result = self._run([self.bindir / "pg_ctl", "status", "-D", str(self.datadir)], check=False)
        return result.returncode == 0

    def cleanup(self) -> None:
        """Stop the server (if running) and delete its directory. Safe to call twice."""
        if self._cleaned:
            return
        self._cleaned = True
        if self._initialized and self.is_running():
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "immediate", check=False)
        shutil.rmtree(self.base, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.cleanup()

    # -- databases ---------------------------------------------------------------------------

    def url(self, database: str = "postgres", driver: str = "postgresql+psycopg") -> str:
        """A SQLAlchemy URL for ``database`` on this server, creating the database if missing."""
        if database != "postgres":
            self.create_database(database)
        return f"{driver}://postgres@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"database name must be letters, digits and '_': {name!r}")
        exists = self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if exists.strip() != "1":
            self.psql(f'CREATE DATABASE "{name}"')

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement with psql over TCP; returns its unaligned output."""
        command = [
            self.bindir / "psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
            "-h", self.host, "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql,
        ]
        return self._run(command).stdout

    # -- internals ---------------------------------------------------------------------------

    def _initdb(self) -> None:
        self._run([
            self.bindir / "initdb", "-D", str(self.datadir), "-U", "postgres",
            "--auth=trust", "--encoding=UTF8", "--no-locale", "--no-sync",
        ])
        settings = {
            "listen_addresses": f"'{self.host}'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",  # never the shared /var/run/postgresql
            "max_connections": "200",
            "fsync": "off",  # throwaway data: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
        }
        with open(self.datadir / "postgresql.conf", "a", encoding="utf-8") as conf:
            conf.write("\n# appserver tests/pgserver.py\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())
        self._initialized = True

    def _pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self._run([self.bindir / "pg_ctl", *args, "-D", str(self.datadir)], check=check)

    def _run(self, command: list, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(part) for part in command],
            user=self.user,
            cwd=self.base,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if check and result.returncode != 0:
            log = self.logfile.read_text(errors="replace")[-2000:] if self.logfile.exists() else ""
            raise RuntimeError(
                f"{Path(command[0]).name} failed ({result.returncode}): "
                f"{result.stderr.strip() or result.stdout.strip()}\n{log}"
            )
        return result
