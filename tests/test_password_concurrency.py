"""A login burst keeps memory bounded: at most ``appserver.password.max_concurrent_hashes``
password hashes (argon2id, 19 MiB each) run at once per process; the others wait for a slot
and then all complete; and a finished hash's buffer leaves the process's resident memory."""
from __future__ import annotations

import subprocess
import sys
import threading

import pytest

from appserver.security.passwords import PasswordService

LIMIT = 2
CALLERS = 6


class GatedContext:
    """Stands in for passlib's context: each hash waits at a gate the test opens."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.changed = threading.Condition()
        self.inside = 0
        self.most_inside = 0

    def verify_and_update(self, password: str, password_hash: str):
        with self.changed:
            self.inside += 1
            self.most_inside = max(self.most_inside, self.inside)
            self.changed.notify_all()
        self.gate.wait()
        with self.changed:
            self.inside -= 1
        return True, None


def test_at_most_the_configured_number_of_hashes_run_at_once_and_the_rest_wait():
    service = PasswordService(max_concurrent=LIMIT)
    context = GatedContext()
    service.context = context
    answers: list[bool] = []
    callers = [
        threading.Thread(target=lambda: answers.append(service.verify("pw", "hash")[0]))
        for _ in range(CALLERS)
    ]
    for caller in callers:
        caller.start()
    with context.changed:
        assert context.changed.wait_for(lambda: context.inside >= LIMIT, timeout=30)
        # With the slots taken, nobody else gets in, however long the others try.
        assert not context.changed.wait_for(lambda: context.inside > LIMIT, timeout=1)
    context.gate.set()
    for caller in callers:
        caller.join(timeout=30)
    assert answers == [True] * CALLERS  # the waiting ones were served, not refused
    assert context.most_inside == LIMIT


RELEASE_PROBE = r"""
import ctypes, sys
from appserver.security.allocator import unmap_large_blocks
if sys.argv[1] == "fixed":
    assert unmap_large_blocks()
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
def resident_kib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
size = 19 * 1024 * 1024  # one argon2id buffer
for _ in range(2):  # the first free is what makes glibc raise its mmap threshold
    block = libc.malloc(size)
    ctypes.memset(block, 1, size)
    held = resident_kib()
    libc.free(block)
print(held - resident_kib())
"""


def _released_kib(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", RELEASE_PROBE, mode], capture_output=True, text=True, check=True)
    return int(done.stdout)


def test_a_finished_hash_gives_its_buffer_back_to_the_operating_system():
    """Without the fixed threshold glibc keeps a freed 19 MiB buffer resident (one per
    thread that hashed), so the limit on concurrent hashes would not bound memory."""
    if not sys.platform.startswith("linux"):
        pytest.skip("glibc's allocator")
    assert _released_kib("fixed") > 18 * 1024
    assert _released_kib("default") < 1024  # what the fix is for: retained by default
