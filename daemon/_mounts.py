"""The Mount controller: keeps this host's Mounts mounted, and unmounts a Mount when it is deleted.

The agent watches the Mounts labelled ``vapor.io/host=<node>`` (a server-side
selector; the gateway sets the label, and a Mount written with kubectl must
carry it too). For each one it:

- holds the ``vapor.io/unmount`` finalizer, so deleting the Mount unmounts first;
- formats the device when ``spec.format`` asks and the device is blank (no
  signature at all), behind every guard of :mod:`._format`;
- mounts it with ``mount -t <fs> -o <options> -- <device> <dir>``, creating
  the directory; it refuses a system directory, a path through a symlink,
  a device mounted elsewhere, the root or boot disk, a VM's disk (the same
  guards as formatting), another filesystem already on the directory, and
  a directory that is not empty unless the options hold ``x-vapor.nonempty``
  (an ``x-`` option: mount(8) keeps it out of the kernel's options);
- reports phase, mounted and message with server-side apply, and records an
  Event on the Host for each mount, unmount, format and failure.

The resource is the truth: every resync (and the start after a restart or a
reboot) mounts again what is missing and remounts when the options changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vapor.kube import Kube, KubeError, NotFound
from vapor.kube._informer import Key, key_of
from vapor.model import Host, names
from vapor.model.mount import FORBIDDEN_MOUNT_POINTS, Mount

from . import _format
from ._config import AgentConfig
from ._controller import NodeController

log = logging.getLogger("vapor.agent.mounts")

CONTROLLER = "agent"
NONEMPTY_OPTION = "x-vapor.nonempty"
RETRY_SECONDS = 30.0
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


class MountController(NodeController[Mount]):
    """Keeps the Mounts of this node as their resources ask."""

    def __init__(
        self, kube: Kube, config: AgentConfig, host: Callable[[], Host | None], vm_disks: Callable[[], set[str]]
    ) -> None:
        super().__init__(kube, Mount, config)
        self.host = host
        self.vm_disks = vm_disks
        self.mounts = kube.resources(Mount)

    async def start(self) -> None:
        """Watch this node's Mounts and reconcile each one now (after a restart or reboot: mount them again)."""
        await self.watch()
        self.run(self.reconcile, name="mounts")
        log.info("watching mounts", extra={"node": self.config.node_name})

    def facts(self) -> _format.Facts:
        return _format.gather_facts(vm_disks=self.vm_disks(), disks_dir=self.config.disks_dir)

    async def reconcile(self, key: Key) -> None:
        mount = self.informer.get(key[1], key[0])
        if mount is None or mount.spec.host != self.config.node_name:
            return
        try:
            if mount.metadata.deletion_timestamp is not None:
                await self._delete(mount)
            else:
                await self._ensure(mount)
        except KubeError as exc:
            log.warning("mount reconcile failed; retrying", extra={"mount": mount.name, "error": str(exc)})
            self.queue.add_after(key, RETRY_SECONDS)

    async def _ensure(self, mount: Mount) -> None:
        finalizers = list(mount.metadata.finalizers or [])
        if names.MOUNT_FINALIZER not in finalizers:
            await self.mounts.patch(
                mount.name,
                {"metadata": {"finalizers": [*finalizers, names.MOUNT_FINALIZER]}},
                field_manager=names.FIELD_MANAGER_AGENT,
            )
        if mount.spec.format is not None and (mount.status is None or mount.status.phase in (None, "Pending")):
            await self._status(mount, "Formatting", False, f"Checking {mount.spec.device} before formatting")
        try:
            done, formatted = await asyncio.to_thread(ensure_mounted, mount, self.facts)
        except (MountRefused, OSError, subprocess.TimeoutExpired) as exc:
            message = getattr(exc, "args", [str(exc)])[0] if isinstance(exc, MountRefused) else str(exc)
            if mount.status is None or mount.status.message != message:
                log.warning("mount failed", extra={"mount": mount.name, "error": message})
                await self._event(mount, "MountFailed", message, "Mount", "Warning")
            await self._status(mount, "Failed", False, message)
            self.queue.add_after(key_of(mount), RETRY_SECONDS)
            return
        if formatted:
            fs = mount.spec.filesystem
            await self._event(mount, "Formatted", f"Formatted {mount.spec.device} as {fs}", "Format")
        if done.startswith(("Mounted", "Remounted")):
            log.info("mounted", extra={"mount": mount.name, "device": mount.spec.device, "at": mount.spec.mount_point})
            await self._event(mount, "Mounted", done, "Mount")
        elif mount.status is not None and mount.status.phase == "Mounted":
            done = mount.status.message or done  # keep the message of the mount that made it
        await self._status(mount, "Mounted", True, done)

    async def _delete(self, mount: Mount) -> None:
        finalizers = list(mount.metadata.finalizers or [])
        if names.MOUNT_FINALIZER not in finalizers:
            return
        if mount.status is None or mount.status.phase != "Unmounting":
            await self._status(mount, "Unmounting", bool(mount.status and mount.status.mounted), "Unmounting")
        try:
            done = await asyncio.to_thread(ensure_unmounted, mount)
        except (MountRefused, OSError, subprocess.TimeoutExpired) as exc:
            message = str(exc)
            if mount.status is None or mount.status.message != message:
                await self._event(mount, "UnmountFailed", message, "Unmount", "Warning")
            await self._status(mount, "Unmounting", True, message)
            self.queue.add_after(key_of(mount), RETRY_SECONDS)
            return
        if done:
            log.info("unmounted", extra={"mount": mount.name, "at": mount.spec.mount_point})
            await self._event(mount, "Unmounted", done, "Unmount")
        with contextlib.suppress(NotFound):
            await self.mounts.patch(
                mount.name,
                {"metadata": {"finalizers": [f for f in finalizers if f != names.MOUNT_FINALIZER] or None}},
                field_manager=names.FIELD_MANAGER_AGENT,
            )

    async def _status(self, mount: Mount, phase: str, mounted: bool, message: str) -> None:
        current = mount.status
        generation = mount.metadata.generation
        if (
            current is not None
            and current.phase == phase
            and current.mounted == mounted
            and current.message == message
            and current.observed_generation == generation
        ):
            return
        status: dict[str, Any] = {"phase": phase, "mounted": mounted, "message": message}
        if generation is not None:
            status["observedGeneration"] = generation
        with contextlib.suppress(NotFound):
            await self.mounts.apply_status(mount.name, status, field_manager=names.FIELD_MANAGER_AGENT)

    async def _event(self, mount: Mount, reason: str, note: str, action: str, kind: str = "Normal") -> None:
        host = self.host()
        if host is None:
            return
        try:
            await self.kube.events.record(
                host,
                reason=reason,
                note=f"{note} (Mount {mount.name})",
                controller=CONTROLLER,
                action=action,
                type="Warning" if kind == "Warning" else "Normal",
            )
        except KubeError as exc:
            log.warning("could not record an event", extra={"reason": reason, "error": str(exc)})
