"""Mounting and unmounting one Mount on this node: the checks, mount(8) and umount2(2), without the controller.

Plain functions without the agent's Kubernetes client, so that they can also
run in the short-lived child that works in the node's mount namespace when
the agent runs in a container (``--mount-namespace-pid``, see hostroot):
there, ``/proc/self/mountinfo``, the mount point's path and the ``mount``
program are the node's, and what is mounted is seen by the node.

The mount point is reached without following any symlink and mounted
through the descriptor that reached it (see mountpoint), so a folder on the
way that its owner swaps for a symlink cannot move the mount elsewhere. A
mount is ``nosuid`` and ``nodev`` unless its options say ``suid`` or ``dev``.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vapor.agentapi.errors import NOT_FOUND
from vapor.model.mount import DEVICE_NOT_FOUND, Mount, forbidden_mount_point

from . import format as _format
from . import mountpoint as _mountpoint

NONEMPTY_OPTION = "x-vapor.nonempty"
MOUNT_FAILED = "MountFailed"  # the Ready condition's reason for every other refusal or failure


class MountRefused(Exception):
    """The Mount cannot be carried out as asked; the message says why, ``reason`` in one word."""

    def __init__(self, message: str, reason: str = MOUNT_FAILED) -> None:
        super().__init__(message)
        self.reason = reason


def mount_table() -> list[_format.MountEntry]:
    """Mounts of the agent's mount namespace, which is the host's."""
    return _format.parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def check_mount_point(mount_point: str) -> None:
    """MountRefused for a path that is relative, has . or .. parts, goes through a symlink, or is a system dir."""
    if not mount_point.startswith("/") or any(p in (".", "..") for p in mount_point.split("/")):
        raise MountRefused(f"mount point {mount_point!r} must be an absolute path without . or .. parts")
    clean = mount_point.rstrip("/") or "/"
    if forbidden_mount_point(clean):
        raise MountRefused(f"{clean} is a system directory; mount somewhere else (for example under /mnt)")
    if os.path.realpath(clean) != clean:  # a clear message early; the mount itself never follows a symlink
        raise MountRefused(f"mount point {clean} goes through a symlink (it is {os.path.realpath(clean)})")


def kernel_options(options: str) -> str:
    """The options mount(8) gets: the Mount's, without Vapor's own, nosuid and nodev unless it says suid or dev."""
    given = [o for o in options.split(",") if o and o != NONEMPTY_OPTION]
    extra = [
        safe for safe, unsafe in (("nosuid", "suid"), ("nodev", "dev")) if safe not in given and unsafe not in given
    ]
    return ",".join([*given, *extra])


def _devno_of(real: str) -> str:
    rdev = os.stat(real).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def _resolve(device: str) -> str:
    try:
        real, _name = _format.resolve_device(device)
    except _format.Refused as exc:
        raise MountRefused(exc.message, DEVICE_NOT_FOUND if exc.code == NOT_FOUND else MOUNT_FAILED) from None
    return real


def ensure_mounted(mount: Mount, facts: Callable[[], _format.Facts]) -> tuple[str, bool]:
    """Mount (formatting first if asked and blank); (what was done, whether it formatted). Blocking."""
    spec = mount.spec
    check_mount_point(spec.mount_point)
    real = _resolve(spec.device)
    devno = _devno_of(real)
    options = kernel_options(spec.options)
    table = mount_table()
    here = [e for e in table if e.mount_point == spec.mount_point]
    if here and here[-1].devno == devno:
        if mount.status is not None and mount.status.observed_generation != mount.metadata.generation:
            with _mountpoint.opened(spec.mount_point, create=False) as fd:
                if _mountpoint.device_of(fd) != devno:
                    raise MountRefused(f"{spec.mount_point} is no longer the mount of {spec.device}")
                _mountpoint.remount_at(fd, options)
            return f"Remounted {spec.device} on {spec.mount_point} with {options}", False
        return f"{spec.device} is mounted on {spec.mount_point}", False
    if here:
        raise MountRefused(f"{spec.mount_point} already has {here[-1].source} mounted on it")
    elsewhere = [e.mount_point for e in table if e.devno == devno]
    if elsewhere:
        raise MountRefused(f"{spec.device} is already mounted at {elsewhere[0]}")
    try:  # the root or boot disk, a VM's disk, swap, a device-mapper member: never mounted here
        _format.check_device(spec.device, facts())
    except _format.Refused as exc:
        raise MountRefused(f"not mounted: {exc.message}") from None
    formatted = False
    if spec.format is not None:
        try:
            formatted = _format.format_device(
                spec.device, spec.filesystem, spec.format.label, facts(), only_if_blank=True
            )
        except _format.Refused as exc:
            raise MountRefused(f"not formatted: {exc.message}") from None
    with _mountpoint.opened(spec.mount_point, create=True) as fd:
        if _mountpoint.entries(fd) and NONEMPTY_OPTION not in spec.options.split(","):
            raise MountRefused(
                f"{spec.mount_point} is not empty; add the option {NONEMPTY_OPTION} to mount over its files"
            )
        _mountpoint.mount_at(fd, real, spec.filesystem, options)
    return f"Mounted {spec.device} on {spec.mount_point}", formatted


def ensure_unmounted(mount: Mount) -> str | None:
    """Unmount the Mount's device from its mount point, if it is mounted there; what was done. Blocking."""
    spec = mount.spec
    try:
        devno = _devno_of(os.path.realpath(spec.device))
    except OSError:
        devno = None
    here = [e for e in mount_table() if e.mount_point == spec.mount_point]
    if not here:
        return None
    # Only our device: another filesystem mounted there since (by hand) is left alone.
    ours = here[-1].devno == devno if devno is not None else here[-1].source == os.path.realpath(spec.device)
    if not ours:
        return None
    parent, _, name = spec.mount_point.rstrip("/").rpartition("/")
    with _mountpoint.opened(parent or "/", create=False) as parent_fd:
        mounted = os.stat(name, dir_fd=parent_fd, follow_symlinks=False).st_dev
        if devno is not None and f"{os.major(mounted)}:{os.minor(mounted)}" != devno:
            return None  # what is there now is not our mount
        _mountpoint.unmount_child(parent_fd, name, spec.mount_point)
    return f"Unmounted {spec.device} from {spec.mount_point}"


def mount_in_node(mount: dict[str, Any], vm_disks: list[str], disks_dir: str | None) -> tuple[str, bool]:
    """``ensure_mounted`` for a Mount given as its API dict (the form a child process gets)."""
    facts = lambda: _format.gather_facts(vm_disks=vm_disks, disks_dir=Path(disks_dir) if disks_dir else None)  # noqa: E731
    try:
        return ensure_mounted(Mount.model_validate(mount), facts)
    except (_mountpoint.MountPointError, OSError, subprocess.TimeoutExpired) as exc:
        raise MountRefused(str(exc)) from None


def unmount_in_node(mount: dict[str, Any]) -> str | None:
    """``ensure_unmounted`` for a Mount given as its API dict."""
    try:
        return ensure_unmounted(Mount.model_validate(mount))
    except (_mountpoint.MountPointError, OSError, subprocess.TimeoutExpired) as exc:
        raise MountRefused(str(exc)) from None
