"""Benchmark servers: each target is a group of waitress processes, each on a port of its
own, driven as a proxy would drive them (``load.wrk`` spreads the connections evenly)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import sysconfig
from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .load import Result, median_result, wrk

ROOT = Path(__file__).resolve().parent.parent


BENCHMARK_SECRET = "benchmark-secret-0123456789-0123456789-abcdef"


def production_environment(database_url: str) -> dict[str, str]:
    """What production.ini takes from the environment, for a benchmark: the database, a
    secret, and the one host name the drivers send (it refuses to start without them)."""
    return {
        "APPSERVER_DATABASE_URL": database_url,
        "APPSERVER_SECRET": os.environ.get("APPSERVER_SECRET", BENCHMARK_SECRET),
        "APPSERVER_ALLOWED_HOSTS": os.environ.get("APPSERVER_ALLOWED_HOSTS", "127.0.0.1"),
    }


@dataclass(frozen=True)
class Setup:
    """How every target of a run is served: the same for the project and the anchors."""

    threads: int
    processes: int
    switch_interval: float | None = None  # None: Python's default, 5 ms

    def __str__(self) -> str:
        interval = f"{self.switch_interval * 1000:g} ms" if self.switch_interval else "default (5 ms)"
        return f"{self.processes} process(es) x {self.threads} waitress threads, switch interval {interval}"


@dataclass
class Target:
    kind: str
    ports: list[int] = field(default_factory=list)
    processes: list[subprocess.Popen] = field(default_factory=list)

    @property
    def url(self) -> str:
        """The first process's address (checks, logins; ``drive`` uses every process)."""
        return f"http://127.0.0.1:{self.ports[0]}"

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start(kind: str, setup: Setup, *, database_url: str = "", config: str = "production.ini",
          cookie_name: str = "__Host-appserver.session") -> Target:
    """``setup.processes`` server processes, each listening on a loopback port of its own.

    Not one socket shared by every process: a shared accept queue hands wrk's persistent
    connections to whichever process accepts first, and a run could put 6 of 8 connections
    on one process and 2 on the other, one core idle. A proxy spreads requests evenly
    (nginx's round robin, the deployment); :func:`drive` spreads connections evenly."""
    target = Target(kind)
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        for _ in range(setup.processes):
            listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listener.bind(("127.0.0.1", 0))
            listener.listen(1024)
            listener.set_inheritable(True)
            try:
                process = subprocess.Popen(
                    _command(kind, setup, listener.fileno(), database_url, config, cookie_name),
                    pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, text=True, cwd=ROOT,
                    env=environment,
                )
                target.processes.append(process)
                target.ports.append(listener.getsockname()[1])
            finally:
                listener.close()
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {kind} server did not start (exit status {process.wait()})")
    except BaseException:
        target.stop()
        raise
    return target


def _command(kind: str, setup: Setup, fd: int, database_url: str, config: str, cookie_name: str) -> list[str]:
    if kind in ("django", "django-per-request"):  # another interpreter: benchmarks/django_app.py
        command = [django_python(), "-m", "benchmarks.django_app", database_url, "serve",
                   "--fd", str(fd), "--threads", str(setup.threads)]
        paths = dict.fromkeys(sysconfig.get_paths()[key] for key in ("purelib", "platlib"))
        command += [f"--site-packages={path}" for path in paths]
        return command + ["--per-request-connections"] if kind == "django-per-request" else command
    command = [
        sys.executable, "-m", "benchmarks.serve", kind,
        "--fd", str(fd),
        "--threads", str(setup.threads),
        "--url", database_url,
        "--config", str(ROOT / config),
        "--cookie-name", cookie_name,
        # Each thread may hold a connection; the pool never makes a thread wait.
        "--pool-size", str(max(setup.threads, 5)),
    ]
    if setup.switch_interval:
        command += ["--switch-interval", str(setup.switch_interval)]
    return command


def django_python() -> str:
    """The interpreter that has Django (``make benchmark-django`` sets it up)."""
    python = os.environ.get("DJANGO_PYTHON")
    if not python:
        raise RuntimeError("DJANGO_PYTHON is not set: run `make benchmark-django`")
    return python


def drive(target: Target, path: str, **options) -> Result:
    """One wrk run on ``path`` of every process of ``target``, connections spread evenly."""
    return wrk(target.url + path, ports=target.ports, **options)


def round_robin(runs: Mapping[Hashable, tuple[Target, str, dict[str, str]]], connections: Iterable[int],
                *, rounds: int, seconds: float) -> dict[tuple[Hashable, int], Result]:
    """Drive every (target, path, headers) of ``runs`` in turn, ``rounds`` times per connection
    count; the median of each, keyed by (the run's key, connections). Round-robin, so a
    slow minute of the shared machine falls on every target alike."""
    results: dict[tuple[Hashable, int], list[Result]] = defaultdict(list)
    for count in connections:
        for _ in range(rounds):
            for key, (target, path, headers) in runs.items():
                results[key, count].append(drive(target, path, connections=count, seconds=seconds, headers=headers))
    return {key: median_result(values) for key, values in results.items()}


def warm(target: Target, path: str, headers: dict[str, str]) -> None:
    """A second of one connection on every process: imports, pools, caches."""
    for port in target.ports:
        wrk(f"http://127.0.0.1:{port}{path}", connections=1, seconds=1, headers=headers)


def peak_memory_kib(pid: int) -> int:
    """The process's peak resident set (VmHWM), from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def resident_memory_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0
