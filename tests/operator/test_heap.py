"""operator/heap.py: freed C heap memory goes back to the system (glibc's malloc_trim)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
import gc
from vapor.operator import heap

def rss():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

# what a burst leaves: many C heap blocks (bytes over 512 are malloc's, not pymalloc's), then one kept at the top
blocks = [bytes(2000 + i % 7) for i in range(100_000)]
keep = bytes(2000)
del blocks
gc.collect()
before = rss()
assert heap.give_back(every=0)
after = rss()
assert not heap.give_back(every=3600)  # once a while only
print(before, after)
"""


def test_give_back_returns_the_freed_heap_to_the_system() -> None:
    env = {**os.environ, "MALLOC_TRIM_THRESHOLD_": str(2**30)}  # glibc would not trim by itself
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, check=True, env=env)
    before, after = map(int, out.stdout.split())
    assert before - after >= 100, f"RSS {before} MiB before the trim, {after} MiB after"
