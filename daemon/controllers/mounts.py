"""The Mount controller: keeps this host's Mounts mounted, and unmounts a Mount when it is deleted.

The agent watches the Mounts labelled ``vapor.io/host=<node>`` (a server-side
selector; the gateway sets the label, and a Mount written with kubectl must
carry it too). For each one it:

- holds the ``vapor.io/unmount`` finalizer, so deleting the Mount unmounts first;
- formats the device when ``spec.format`` asks and the device is blank (no
  signature at all), behind every guard of :mod:`..host.format`;
- mounts it with ``mount -t <fs> -o <options> -- <device> <dir>``, creating
  the directory; it refuses a system directory, a path through a symlink,
  a device mounted elsewhere, the root or boot disk, a VM's disk (the same
  guards as formatting), another filesystem already on the directory, and
  a directory that is not empty unless the options hold ``x-vapor.nonempty``
  (an ``x-`` option: mount(8) keeps it out of the kernel's options);
- reports phase, mounted, message and a Ready condition (True ``Mounted``, or
  False with why: ``DeviceNotFound``, ``MountFailed``, ``Formatting``,
  ``Unmounting``) with server-side apply, and records an Event on the Host
  for each mount, unmount, format and failure;
- tells the Host reporter after each mount, unmount and format, so the
  disks in the Host's status show it at once, and tries a Failed Mount again
  as soon as the kernel reports a block device added or changed (a Mount
  written before its disk was attached mounts when it appears).

The resource is the truth: every resync (and the start after a restart or a
reboot) mounts again what is missing and remounts when the options changed.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

from vapor.kube import Kube, KubeError, NotFound
from vapor.kube._informer import Key, key_of
from vapor.model import Host, MetadataPatch, MountStatus, names
from vapor.model.mount import Mount, MountPhase

from .._config import AgentConfig
from ..host.hostroot import NodeNamespace
from ..host.mountops import MountRefused
from .loop import NodeController

log = logging.getLogger("vapor.agent.mounts")

CONTROLLER = "agent"
RETRY_SECONDS = 30.0


class MountController(NodeController[Mount]):
    """Keeps the Mounts of this node as their resources ask."""

    def __init__(
        self,
        kube: Kube,
        config: AgentConfig,
        host: Callable[[], Host | None],
        vm_disks: Callable[[], set[str]],
        changed: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__(kube, Mount, config)
        self.host = host
        self.vm_disks = vm_disks
        self.changed = changed  # the node's disks or mounts changed: the Host's status should show it
        self.mounts = kube.resources(Mount)
        self.node = NodeNamespace(config.mount_namespace_pid)

    async def start(self) -> None:
        """Watch this node's Mounts and reconcile each one now (after a restart or reboot: mount them again)."""
        await self.watch()
        self.run(self.reconcile, name="mounts")
        log.info("watching mounts", extra={"node": self.config.node_name})

    def retry_failed(self) -> None:
        """Queue every Mount that failed (a block device appeared or changed: it may be there now)."""
        for mount in self.informer.items():
            if mount.status is not None and mount.status.phase == "Failed":
                self.queue.add(key_of(mount))

    async def reconcile(self, key: Key) -> None:
        """Mount, unmount or report one Mount of this host."""
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
                metadata=MetadataPatch(finalizers=[*finalizers, names.MOUNT_FINALIZER]),
                field_manager=names.FIELD_MANAGER_AGENT,
            )
        if mount.spec.format is not None and (mount.status is None or mount.status.phase in (None, "Pending")):
            await self._status(mount, "Formatting", False, f"Checking {mount.spec.device} before formatting")
        try:
            disks_dir = str(self.config.disks_dir)
            done, formatted = await self.node.call("mount_in_node", mount.to_api(), sorted(self.vm_disks()), disks_dir)
        except MountRefused as exc:
            message = str(exc)
            if mount.status is None or mount.status.message != message:
                log.warning("mount failed", extra={"mount": mount.name, "error": message})
                await self._event(mount, "MountFailed", message, "Mount", "Warning")
            await self._status(mount, "Failed", False, message, exc.reason)
            self.queue.add_after(key_of(mount), RETRY_SECONDS)
            return
        if formatted or done.startswith(("Mounted", "Remounted")):
            self.changed()
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
            done = await self.node.call("unmount_in_node", mount.to_api())
        except MountRefused as exc:
            message = str(exc)
            if mount.status is None or mount.status.message != message:
                await self._event(mount, "UnmountFailed", message, "Unmount", "Warning")
            await self._status(mount, "Unmounting", True, message)
            self.queue.add_after(key_of(mount), RETRY_SECONDS)
            return
        if done:
            self.changed()
            log.info("unmounted", extra={"mount": mount.name, "at": mount.spec.mount_point})
            await self._event(mount, "Unmounted", done, "Unmount")
        with contextlib.suppress(NotFound):
            await self.mounts.patch(
                mount.name,
                metadata=MetadataPatch(finalizers=[f for f in finalizers if f != names.MOUNT_FINALIZER] or None),
                field_manager=names.FIELD_MANAGER_AGENT,
            )

    async def _status(
        self, mount: Mount, phase: MountPhase, mounted: bool, message: str, reason: str | None = None
    ) -> None:
        current = mount.status
        generation = mount.metadata.generation
        ready = mount.condition_after(
            names.ConditionType.READY, "True" if phase == "Mounted" else "False", reason or phase, message
        )
        if (
            current is not None
            and current.phase == phase
            and current.mounted == mounted
            and current.message == message
            and current.observed_generation == generation
            and ready.says_same_as(mount.condition(names.ConditionType.READY))
        ):
            return
        status = MountStatus(
            phase=phase, mounted=mounted, message=message, observed_generation=generation, conditions=[ready]
        )
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
