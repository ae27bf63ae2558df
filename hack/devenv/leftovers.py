"""Finding and removing what a daemon leaves on the machine: mounts under a folder, shims, cgroups.

The node (node.py) and the tests' hermetic dockerd and containerd use these
when they stop, so that a failed run leaves nothing behind for the next.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

CGROUPS = Path("/sys/fs/cgroup")


def mounts_under(folder: Path) -> list[str]:
    """Mount points at or below ``folder`` in this mount namespace."""
    prefix = str(folder) + "/"
    found: list[str] = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point.startswith(prefix) or point == str(folder):
                found.append(point)
    return found


def unmount_all_under(folder: Path) -> None:
    """Unmount everything mounted at or below ``folder``, deepest first."""
    for point in sorted(mounts_under(folder), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def shims_of(socket: str) -> list[int]:
    """Process ids of containerd shims started by the containerd listening on ``socket``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and socket.encode() in argv:
            pids.append(int(entry.name))
    return pids


def kill_shims(socket: str) -> None:
    """End the shims ``socket``'s containerd left (after it stopped), and their containers' processes first."""
    for pid in shims_of(socket):
        for child in _children(pid):
            with contextlib.suppress(OSError):
                os.kill(child, signal.SIGKILL)
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup hierarchies (v1 controllers and the v2 ``unified`` one of a hybrid layout)."""
    return sorted(path for path in CGROUPS.iterdir() if path.is_dir() and not path.is_symlink())


def remove_cgroup(name: str, timeout: float = 10.0) -> list[Path]:
    """Remove the cgroup ``/name`` and all below it in every hierarchy; the ones still busy after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        busy = []
        for hierarchy in cgroup_hierarchies():
            top = hierarchy / name
            if not top.is_dir():
                continue
            for folder in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
            try:
                top.rmdir()
            except OSError:
                busy.append(top)
        if not busy or time.monotonic() > deadline:
            return busy
        time.sleep(0.2)
