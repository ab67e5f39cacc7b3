"""Give argon2's 19 MiB buffers back to the operating system when a hash is done.

glibc serves large allocations with mmap and unmaps them on free, but raises that threshold
(up to 32 MiB) the first time such a block is freed; from then on every thread's 19 MiB
buffer comes from its own malloc arena and stays resident after the hash. A process with
N waitress threads then keeps N x 19 MiB, whatever ``appserver.password.max_concurrent_hashes``
says. Fixing the threshold (which also stops glibc moving it) keeps the resident memory of a
login burst at about ``max_concurrent_hashes`` x 19 MiB (docs/performance.md).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger(__name__)

M_MMAP_THRESHOLD = -3  # glibc's <malloc.h>
THRESHOLD = 1024 * 1024  # far below an argon2 buffer, far above ordinary Python objects


def unmap_large_blocks(threshold: int = THRESHOLD) -> bool:
    """True when glibc took the setting; False elsewhere (musl, macOS): nothing to do there."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = mallopt(M_MMAP_THRESHOLD, threshold) == 1
    if not done:
        log.warning("mallopt(M_MMAP_THRESHOLD) refused: argon2 buffers may stay resident")
    return done
