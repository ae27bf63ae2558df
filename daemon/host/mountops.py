"""Mounting and unmounting one Mount on this node: the checks, mount(8) and umount(8), without the controller.

Plain functions without the agent's Kubernetes client, so that they can also
run in the short-lived child that works in the node's mount namespace when
the agent runs in a container (``--mount-namespace-pid``, see _hostroot):
there, ``/proc/self/mountinfo``, the mount point's path and the ``mount``
program are the node's, and what is mounted is seen by the node.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vapor.model.mount import FORBIDDEN_MOUNT_POINTS, Mount

from . import format as _format

NONEMPTY_OPTION = "x-vapor.nonempty"
COMMAND_TIMEOUT = 120


class MountRefused(Exception):
    """The Mount cannot be carried out as asked; the message says why."""


def mount_table() -> list[_format.MountEntry]:
    """Mounts of the agent's mount namespace, which is the host's."""
    return _format.parse_mountinfo(Path("/proc/self/mountinfo").read_text())


def check_mount_point(mount_point: str) -> None:
    """MountRefused for a path that is relative, has . or .. parts, goes through a symlink, or is a system dir."""
    if not mount_point.startswith("/") or any(p in (".", "..") for p in mount_point.split("/")):
        raise MountRefused(f"mount point {mount_point!r} must be an absolute path without . or .. parts")
    clean = mount_point.rstrip("/") or "/"
    if clean == "/" or any(clean == p or clean.startswith(p + "/") for p in FORBIDDEN_MOUNT_POINTS):
        raise MountRefused(f"{clean} is a system directory; mount somewhere else (for example under /mnt)")
    if os.path.realpath(clean) != clean:
        raise MountRefused(f"mount point {clean} goes through a symlink (it is {os.path.realpath(clean)})")


def _run(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False)
    if result.returncode != 0:
        raise MountRefused(f"{argv[0]} failed: {(result.stderr or result.stdout).strip()[:500]}")


def _devno_of(real: str) -> str:
    rdev = os.stat(real).st_rdev
    return f"{os.major(rdev)}:{os.minor(rdev)}"


def ensure_mounted(mount: Mount, facts: Callable[[], _format.Facts]) -> tuple[str, bool]:
    """Mount (formatting first if asked and blank); (what was done, whether it formatted). Blocking."""
    spec = mount.spec
    check_mount_point(spec.mount_point)
    try:
        real, _name = _format.resolve_device(spec.device)
    except _format.Refused as exc:
        raise MountRefused(exc.message) from None
    devno = _devno_of(real)
    options = [o for o in spec.options.split(",") if o]
    kernel_options = ",".join(o for o in options if o != NONEMPTY_OPTION) or "defaults"
    table = mount_table()
    here = [e for e in table if e.mount_point == spec.mount_point]
    if here and here[-1].devno == devno:
        if mount.status is not None and mount.status.observed_generation != mount.metadata.generation:
            _run(["mount", "-o", f"remount,{kernel_options}", "--", spec.mount_point])
            return f"Remounted {spec.device} on {spec.mount_point} with {kernel_options}", False
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
    target = Path(spec.mount_point)
    target.mkdir(parents=True, exist_ok=True)
    check_mount_point(spec.mount_point)  # again: nothing on the way became a symlink meanwhile
    if any(target.iterdir()) and NONEMPTY_OPTION not in options:
        raise MountRefused(f"{spec.mount_point} is not empty; add the option {NONEMPTY_OPTION} to mount over its files")
    _run(["mount", "-t", spec.filesystem, "-o", kernel_options, "--", real, spec.mount_point])
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
    _run(["umount", "--", spec.mount_point])
    return f"Unmounted {spec.device} from {spec.mount_point}"


def mount_in_node(mount: dict[str, Any], vm_disks: list[str], disks_dir: str | None) -> tuple[str, bool]:
    """``ensure_mounted`` for a Mount given as its API dict (the form a child process gets)."""
    facts = lambda: _format.gather_facts(vm_disks=vm_disks, disks_dir=Path(disks_dir) if disks_dir else None)  # noqa: E731
    try:
        return ensure_mounted(Mount.model_validate(mount), facts)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MountRefused(str(exc)) from None


def unmount_in_node(mount: dict[str, Any]) -> str | None:
    """``ensure_unmounted`` for a Mount given as its API dict."""
    try:
        return ensure_unmounted(Mount.model_validate(mount))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise MountRefused(str(exc)) from None
