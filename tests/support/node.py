"""Stand-ins for the node a containerized agent works on: its root filesystem and its init's mount namespace.

The chart mounts the node's ``/`` at ``/host`` (``--host-root=/host``) and
runs the agent with hostPID and ``--mount-namespace-pid=1``. Tests must not
hand it this machine's own root or init, so:

- ``node_root()`` unpacks a real Debian root filesystem (the cached
  debootstrap rootfs of the image tests) into a temporary folder, with its
  own /etc/passwd, PAM configuration, useradd and bash, and a marker file a
  shell can show; ``shared=True`` also makes it a shared mount point, as a
  node's ``/`` is under systemd (a container's ``rslave`` bind needs that).
- ``admin_of(root)`` makes an admin (a user in a group of its own) that
  exists in that root only.
- ``node_init_process()`` starts a ``sleep`` in a mount namespace of its own
  (``unshare --mount``) to play the node's init: its pid is what
  ``--mount-namespace-pid`` gets; its mounts go when it is killed.

Everything is removed afterwards, even when the test fails. The fixtures
``node_admin`` (an admin of the module's own ``node_root`` fixture) and
``node_init`` wrap them for test modules to import.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.image.base import rootfs_tarball

from .wait import eventually

MARKER = "this-is-the-node-root"


def in_root(root: Path, *args: str, stdin: str | None = None) -> None:
    """Run a command chrooted into ``root``; CalledProcessError if it fails."""
    subprocess.run(["chroot", str(root), *args], input=stdin, text=True, check=True, capture_output=True)


def mounted_in(pid: int, target: Path) -> bool:
    """Whether ``target`` is a mount point in the mount namespace of process ``pid``."""
    lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    return any(line.split()[4] == str(target) for line in lines)


@contextlib.contextmanager
def node_root(*, shared: bool = False) -> Iterator[Path]:
    """A Debian root filesystem playing the node's ``/`` (``etc/vapor-marker`` holds MARKER)."""
    root = Path(tempfile.mkdtemp(prefix="vapor-node-root-"))
    bound = False
    try:
        subprocess.run(["tar", "--numeric-owner", "-C", str(root), "-xf", str(rootfs_tarball())], check=True)
        (root / "etc/vapor-marker").write_text(MARKER + "\n")
        if shared:
            subprocess.run(["mount", "--bind", str(root), str(root)], check=True)
            bound = True
            subprocess.run(["mount", "--make-rshared", str(root)], check=True)
        yield root
    finally:
        if bound:
            subprocess.run(["umount", "--recursive", "--lazy", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class NodeUser:
    """A user of the node's root only."""

    name: str
    password: str
    group: str


@contextlib.contextmanager
def admin_of(root: Path) -> Iterator[NodeUser]:
    """An admin that exists in ``root`` only: a user with bash, a home and a group of its own (the admin group)."""
    suffix = uuid.uuid4().hex[:6]
    user = NodeUser(name=f"nadmin{suffix}", password=f"Node-admin-{suffix}", group=f"nops{suffix}")
    try:
        in_root(root, "groupadd", user.group)
        in_root(root, "useradd", "-m", "-s", "/bin/bash", "-G", user.group, "--", user.name)
        in_root(root, "chpasswd", stdin=f"{user.name}:{user.password}\n")
        yield user
    finally:
        subprocess.run(["chroot", str(root), "userdel", "-r", "-f", user.name], capture_output=True, check=False)
        subprocess.run(["chroot", str(root), "groupdel", user.group], capture_output=True, check=False)


@contextlib.asynccontextmanager
async def node_init_process() -> AsyncIterator[int]:
    """The pid of a process in a mount namespace of its own, killed (its mounts with it) at the end."""
    holder = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sleep", "infinity"])
    try:
        ours = os.readlink("/proc/self/ns/mnt")
        await eventually(lambda: os.readlink(f"/proc/{holder.pid}/ns/mnt") != ours, 10, "a mount namespace of its own")
        yield holder.pid
    finally:
        holder.kill()
        holder.wait()


@pytest.fixture
def node_admin(node_root: Path) -> Iterator[NodeUser]:
    """An admin of the test module's ``node_root`` only."""
    with admin_of(node_root) as user:
        yield user


@pytest.fixture
async def node_init() -> AsyncIterator[int]:
    """The pid playing the node's init (``node_init_process``)."""
    async with node_init_process() as pid:
        yield pid
