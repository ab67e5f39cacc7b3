"""Driving ``wrk`` and reading its report."""
from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


class LoadError(RuntimeError):
    """wrk is missing, or a run got errors or non-2xx answers: its figures would lie."""


@dataclass(frozen=True)
class Result:
    requests_per_second: float
    p50: float  # seconds
    p99: float
    requests: int


def _seconds(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if match is None:
        raise LoadError(f"unreadable latency {text!r}")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse(report: str) -> Result:
    if "Non-2xx or 3xx responses" in report or "Socket errors" in report:
        raise LoadError("the run had errors or non-2xx answers:\n" + report)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", report)
    p50 = re.search(r"^\s+50%\s+(\S+)", report, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", report, re.MULTILINE)
    count = re.search(r"(\d+) requests in", report)
    if not (rate and p50 and p99 and count):
        raise LoadError("unreadable wrk report:\n" + report)
    return Result(float(rate.group(1)), _seconds(p50.group(1)), _seconds(p99.group(1)), int(count.group(1)))


#: wrk's setup() runs once per thread: thread i drives the i-th port (one server process).
SPREAD = """
local ports = {%s}
local started = 0
function setup(thread)
   started = started + 1
   thread.addr = wrk.lookup("127.0.0.1", tostring(ports[(started - 1) %% #ports + 1]))[1]
end
"""


def wrk(url: str, *, connections: int, seconds: float, headers: dict[str, str] | None = None,
        script: str | None = None, ports: list[int] | None = None) -> Result:
    """One wrk run. With ``ports`` (one per server process), its connections are spread
    evenly over them: one wrk thread per port (or per connection when they do not divide
    evenly), each thread's connections to its port. Otherwise one thread, ``url`` alone."""
    binary = shutil.which("wrk")
    if binary is None:
        raise LoadError("wrk is not installed (Debian: apt-get install wrk)")
    threads = 1
    if ports and len(ports) > 1 and connections > 1:
        if script:
            raise LoadError("a script of its own and several ports: not both")
        threads = len(ports) if connections % len(ports) == 0 else connections
    command = [binary, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
               "--timeout", "10s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as spread:
        if threads > 1:
            spread.write(SPREAD % ", ".join(str(port) for port in ports))
            spread.flush()
            script = spread.name
        if script:
            command += ["-s", script]
        command.append(url)
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise LoadError(done.stderr or done.stdout)
    return parse(done.stdout)


def median_result(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.requests_per_second for r in results),
        statistics.median(r.p50 for r in results),
        statistics.median(r.p99 for r in results),
        sum(r.requests for r in results),
    )
