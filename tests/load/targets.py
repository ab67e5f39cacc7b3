"""The servers under load, as real OS processes: ``pserve`` of an ini that *uses* the
project's own ``development.ini`` or ``production.ini`` and changes only what a test run
must (the address, the database file; the debug toolbar is left out of the SQLite run: it
keeps every request in memory and is not what users are served).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import requests

from ..ini import logging_sections
from ..pgserver import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the virtualenv running us: pserve, appserver, locust

_COMMON = """\
[alembic]
script_location = {root}/migrations

""" + logging_sections("%(asctime)s %(levelname)-5.5s [%(name)s][%(threadName)s] %(message)s")


def development_ini(folder: Path, port: int, sqlite_file: Path) -> Path:
    """development.ini on a temporary SQLite file and a free port."""
    path = folder / f"development-{port}.ini"
    source = ROOT / "development.ini"
    path.write_text(
        f"[app:main]\nuse = config:{source}#main\nsqlalchemy.url = sqlite:///{sqlite_file}\n"
        f"pyramid.includes =\n\n"
        f"[server:main]\nuse = config:{source}#main\nlisten = 127.0.0.1:{port}\n\n"
        + _COMMON.format(root=ROOT)
    )
    return path


def production_ini(folder: Path, port: int) -> Path:
    """production.ini unchanged but for ``listen`` (the database and the secret come from
    APPSERVER_DATABASE_URL, APPSERVER_SECRET and APPSERVER_ALLOWED_HOSTS, as in production)."""
    path = folder / f"production-{port}.ini"
    source = ROOT / "production.ini"
    path.write_text(
        f"[app:main]\nuse = config:{source}#main\n\n"
        f"[server:main]\nuse = config:{source}#main\nlisten = 127.0.0.1:{port}\n\n"
        + _COMMON.format(root=ROOT)
    )
    return path


def run_cli(ini: Path, *args: str, env: dict[str, str]) -> str:
    """``appserver INI ARGS`` (initdb --demo: the development set-up's own migration)."""
    result = subprocess.run(
        [str(BIN / "appserver"), str(ini), *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL,
    )
    if result.returncode != 0:
        raise RuntimeError(f"appserver {' '.join(args)} failed: {result.stderr[-2000:]}")
    return result.stdout


@dataclass
class Pserve:
    """One ``pserve INI`` process on a loopback port."""

    ini: Path
    port: int
    env: dict[str, str]
    log: Path
    process: subprocess.Popen | None = None
    killed_at: float | None = None
    _log_file: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def launch(self) -> None:
        """Start the process (``wait_ready`` waits for it to serve)."""
        self._log_file = open(self.log, "ab")
        self.process = subprocess.Popen(
            [str(BIN / "pserve"), str(self.ini)], cwd=self.ini.parent, env=self.env,
            stdin=subprocess.DEVNULL, stdout=self._log_file, stderr=subprocess.STDOUT,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pserve {self.ini.name} exited: {self.log.read_text()[-2000:]}")
            try:
                requests.get(self.url + "/rest/api/2/serverInfo", timeout=2)
                return
            except requests.ConnectionError:
                time.sleep(0.1)  # waiting for the process to listen
        raise RuntimeError(f"pserve {self.ini.name} did not answer within {timeout} s")

    def kill(self) -> None:
        """SIGKILL: no clean-up, requests in flight die with the process."""
        assert self.process is not None
        self.killed_at = time.time()
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def new_server(ini_for_port, folder: Path, env: dict[str, str]) -> Pserve:
    port = free_port()
    return Pserve(ini_for_port(port), port, env, folder / f"pserve-{port}.log")
