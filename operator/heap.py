"""Giving the C heap's free pages back to the system once a burst of work is over.

Placing thousands of VMs parses and drops hundreds of megabytes of JSON and
response buffers; the C allocator keeps what was freed for reuse, so the
operator's RSS stays at the burst's high-water mark long after (in the
10,000-VM run, ~30 MiB of the heap free but held). glibc's ``malloc_trim``
returns those pages; other C libraries have no such call, and nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable

TRIM_EVERY = 60.0  # seconds: at most one trim a minute, and only when the caller is idle


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim: Callable[[int], int] = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    return trim


_trim = _malloc_trim()
_last = float("-inf")


def give_back(every: float = TRIM_EVERY) -> bool:
    """Return the heap's free pages to the system, unless done less than ``every`` seconds ago.

    Returns whether it trimmed (False where the C library cannot).
    """
    global _last
    now = time.monotonic()
    if _trim is None or now - _last < every:
        return False
    _last = now
    _trim(0)
    return True
