"""A clone's disks as the VM controller sees them: copied from the source VM before the clone is defined.

A VM with spec.cloneFrom whose disk files are not on this host yet gets them
from its source VM (on this host: the operator places a clone beside its
source) through :mod:`..host.clone`, before its domain is defined, so it
never starts on a partial disk. Meanwhile it is Pending with condition Cloned
False: reason Copying (the progress in the message), or why it waits
(SourceRunning, CloneSourceNotFound, SnapshotNotReady) or failed
(CloneFailed, CloneUnsupported, SnapshotFailed). Once the disks are whole,
Cloned is True for good. While a copy reads a stopped source's disks, the
source is not started (reason CloneReadingDisks) until the copy ends.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube, NotFound
from vapor.model import VirtualMachine, VirtualMachineSnapshot, VirtualMachineStatus, names

from ..host import clone as _clone
from ..host import domain as _domain
from ..host.imagecache import CachedImage
from ..host.libvirt import Libvirt
from ..host.snapshots import libvirt_name
from . import vmstatus
from .vmstatus import ACTIVE, Other, VMError

PROGRESS_EVERY = 2.0  # seconds between two writes of the copy's progress


def cloned_of(vm: VirtualMachine) -> list[Other]:
    """The Cloned condition of a clone whose domain is defined (its disks are whole), else none."""
    source = vm.spec.clone_from
    if source is None:
        return []
    what = f"snapshot {source.snapshot} of VM {source.vm}" if source.snapshot else f"VM {source.vm}"
    return [(names.ConditionType.CLONED, "True", "Copied", f"The disks were copied from {what} ({source.mode}).")]


def _waiting(reason: str, message: str, *, failed: bool = False) -> VMError:
    return VMError(
        reason, message, waiting=not failed, condition=(names.ConditionType.CLONED, "False", reason, message)
    )


class Cloner:
    """Copies the disks of this node's clones; knows which sources are being read."""

    def __init__(
        self,
        kube: Kube,
        libvirt_conn: Libvirt,
        disks_dir: Path,
        vms: Callable[[str, str], VirtualMachine | None],
        write: Callable[[VirtualMachine, VirtualMachineStatus], Awaitable[None]],
    ) -> None:
        self.kube = kube
        self.libvirt = libvirt_conn
        self.disks_dir = disks_dir
        self._vm = vms  # (name, namespace) -> the VM on this node, from the controller's cache
        self._write = write  # the controller's status write
        self._reading: dict[str, int] = {}  # uid of a stopped source -> copies reading its disks now

    def hold(self, vm: VirtualMachine) -> None:
        """VMError (waiting) when ``vm`` is a stopped source whose disks a clone is copying: it may not start yet."""
        if self._reading.get(vm.metadata.uid or ""):
            raise VMError(
                "CloneReadingDisks",
                "a clone is copying this VM's disks; it starts once the copy ends",
                waiting=True,
                leaves_domain=True,
            )

    async def ensure(self, vm: VirtualMachine, images: Mapping[str, CachedImage]) -> None:
        """Copy the disks of ``vm`` (a clone) that are not here yet; VMError when it cannot now or at all."""
        spec = vm.spec.clone_from
        cond = vm.condition(names.ConditionType.CLONED)
        if spec is None or (cond is not None and cond.status == "True"):
            return  # copied once for good: the source may be gone since
        namespace = vm.metadata.namespace or ""
        source = self._vm(spec.vm, namespace)
        if source is None or source.metadata.deletion_timestamp is not None:
            raise _waiting(
                "CloneSourceNotFound", f"the source VM {spec.vm} is not on this host (it does not exist, or moved)"
            )
        try:
            copies = _clone.plan(vm, source, self.disks_dir, images)
        except _clone.CloneRefused as exc:
            raise _waiting(exc.reason, exc.message, failed=not isinstance(exc, _clone.CloneNotYet)) from None
        if not copies:
            return
        if spec.snapshot is not None:
            snap = await self._check_snapshot(source, spec.snapshot)
            await self._copy(vm, source, copies, libvirt_name(snap.name, snap.metadata.uid or ""))
            return
        uid = source.metadata.uid or ""
        self._reading[uid] = self._reading.get(uid, 0) + 1  # from now on the source does not start
        try:
            if await self._runs(source):
                raise _waiting(
                    "SourceRunning",
                    f"the source VM {spec.vm} is running: stop it, or clone from a snapshot of it; the copy "
                    "starts once it is stopped",
                )
            await self._copy(vm, source, copies, None)
        finally:
            self._reading[uid] -= 1
            if not self._reading[uid]:
                del self._reading[uid]

    async def _runs(self, source: VirtualMachine) -> bool:
        dom = await self.libvirt.lookup(_domain.domain_name(source.metadata.namespace or "", source.name))
        if dom is None:
            return False
        state, _ = await self.libvirt.call(dom.state)
        return state in ACTIVE or state == libvirt.VIR_DOMAIN_SHUTDOWN

    async def _check_snapshot(self, source: VirtualMachine, name: str) -> VirtualMachineSnapshot:
        namespace = source.metadata.namespace or ""
        try:
            snap = await self.kube.resources(VirtualMachineSnapshot).get(name, namespace)
        except NotFound:
            raise _waiting("SnapshotNotFound", f"no VirtualMachineSnapshot {name} in namespace {namespace}") from None
        taken_of = snap.status.vm_uid if snap.status else None
        if snap.spec.vm != source.name or (taken_of is not None and taken_of != source.metadata.uid):
            message = f"snapshot {name} is not of the VM {source.name}"
            raise _waiting("SnapshotNotOfSource", message, failed=True)
        if snap.phase == "Failed":
            raise _waiting("SnapshotFailed", f"snapshot {name} failed; clone from another one", failed=True)
        if snap.phase != "Ready":
            raise _waiting("SnapshotNotReady", f"snapshot {name} is {snap.phase or 'Pending'}, not Ready yet")
        return snap

    async def _copy(
        self, vm: VirtualMachine, source: VirtualMachine, copies: list[_clone.DiskCopy], snapshot: str | None
    ) -> None:
        last = 0.0

        async def progress(disk: str, percent: float) -> None:
            nonlocal last
            if time.monotonic() - last >= PROGRESS_EVERY:
                last = time.monotonic()
                await self._show(vm, f"copying disk {disk} from VM {source.name}: {percent:.0f}%")

        await self._show(vm, f"copying {len(copies)} disk(s) from VM {source.name}")
        try:
            await _clone.copy_disks(copies, snapshot, progress)
        except _clone.CloneRefused as exc:
            raise _waiting(exc.reason, exc.message, failed=not isinstance(exc, _clone.CloneNotYet)) from None

    async def _show(self, vm: VirtualMachine, message: str) -> None:
        status = vmstatus.build(
            vm,
            phase="Pending",
            ready=("False", "Cloning", message),
            others=[(names.ConditionType.CLONED, "False", "Copying", message)],
        )
        await self._write(vm, status)
