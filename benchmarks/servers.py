"""Benchmark servers: each target is a group of waitress processes sharing one socket."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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
    url: str
    processes: list[subprocess.Popen] = field(default_factory=list)

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
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(1024)
    listener.set_inheritable(True)
    port = listener.getsockname()[1]
    target = Target(kind, f"http://127.0.0.1:{port}")
    command = [
        sys.executable, "-m", "benchmarks.serve", kind,
        "--fd", str(listener.fileno()),
        "--threads", str(setup.threads),
        "--url", database_url,
        "--config", str(ROOT / config),
        "--cookie-name", cookie_name,
        # Each thread may hold a connection; the pool never makes a thread wait.
        "--pool-size", str(max(setup.threads, 5)),
    ]
    if setup.switch_interval:
        command += ["--switch-interval", str(setup.switch_interval)]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    try:
        for _ in range(setup.processes):
            process = subprocess.Popen(
                command, pass_fds=(listener.fileno(),), stdout=subprocess.PIPE, text=True,
                cwd=ROOT, env=environment,
            )
            target.processes.append(process)
            if process.stdout.readline().strip() != "ready":
                raise RuntimeError(f"the {kind} server did not start (exit status {process.wait()})")
    except BaseException:
        target.stop()
        raise
    finally:
        listener.close()
    return target


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
