"""VirtualMachineSnapshots of the VMs on this host: taken into the VM's disks, merged away when deleted.

The agent watches the snapshots labelled ``vapor.io/host=<node>`` (the
operator copies the VM's host label onto each snapshot; the gateway sets it
at create). For each one it:

- holds the :data:`SNAPSHOT_FINALIZER`, so deleting the snapshot first merges
  it away from the disks (``snapshotDelete``);
- takes it once (phase InProgress, then Ready or Failed with
  ``failureReason``) as libvirt internal snapshots in the VM's qcow2 disks
  (:mod:`..host.snapshots`), while the VM controller leaves the domain alone;
- never takes it again: a Ready or Failed snapshot stays as it is.

When a VM is deleted its domain and disks go, and its snapshots with them:
the agent then deletes the VM's snapshot and restore resources itself (the
gateway and the operator also set the VM as their owner, so a cluster's
garbage collector would; the dev control plane runs none). A snapshot whose
VM or domain is gone lifts its finalizer without touching any disk.
"""

from __future__ import annotations

import contextlib
import logging
from datetime import UTC, datetime

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube, KubeError, NotFound
from vapor.kube._informer import Key, key_of
from vapor.model import ConditionStatus, MetadataPatch, VirtualMachine, names
from vapor.model.snapshot import (
    SNAPSHOT_FINALIZER,
    SnapshotPhase,
    VirtualMachineRestore,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotStatus,
)

from .._config import AgentConfig
from ..host import snapshots as _snapshots
from ..host.libvirt import Libvirt
from .loop import NodeController
from .vms import VMController
from .vmstatus import VMError

log = logging.getLogger("vapor.agent.snapshots")

CONTROLLER = "agent"
RETRY_SECONDS = 5.0
GRACE_SECONDS = 30.0
MIGRATING = "the VM is being migrated; the snapshot waits until it ends (on its new host it fails: not there)"


class SnapshotController(NodeController[VirtualMachineSnapshot]):
    """Takes and merges away the snapshots of this node's VMs."""

    def __init__(self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt, vms: VMController) -> None:
        super().__init__(kube, VirtualMachineSnapshot, config)
        self.libvirt = libvirt_conn
        self.vms = vms
        self.snapshots = kube.resources(VirtualMachineSnapshot)
        vms.removed.append(self.vm_removed)

    async def start(self) -> None:
        """Watch this node's snapshots and look at each one now."""
        await self.watch()
        self.run(self.reconcile, workers=2, name="snapshots")
        log.info("watching snapshots", extra={"node": self.config.node_name})

    def vm_of(self, namespace: str, name: str) -> VirtualMachine | None:
        """The VM ``name`` of ``namespace`` when it is placed on this node."""
        return self.vms.informer.get(name, namespace)

    async def reconcile(self, key: Key) -> None:
        """Take, report or merge away one snapshot."""
        snap = self.informer.get(key[1], key[0])
        if snap is None:
            return
        try:
            if snap.metadata.deletion_timestamp is not None:
                await self._delete(snap)
            elif snap.phase not in ("Ready", "Failed"):
                await self._take(snap)
        except NotFound:
            return
        except (KubeError, libvirt.libvirtError, VMError) as exc:
            log.warning("snapshot reconcile failed; retrying", extra={"snapshot": "/".join(key), "error": str(exc)})
            self.queue.add_after(key, RETRY_SECONDS)

    async def _take(self, snap: VirtualMachineSnapshot) -> None:
        namespace = snap.metadata.namespace or ""
        finalizers = list(snap.metadata.finalizers or [])
        if SNAPSHOT_FINALIZER not in finalizers:
            snap = await self.snapshots.patch(
                snap.name,
                metadata=MetadataPatch(
                    finalizers=[*finalizers, SNAPSHOT_FINALIZER], resource_version=snap.metadata.resource_version
                ),
                namespace=namespace,
                field_manager=names.FIELD_MANAGER_AGENT,
            )
        vm = self.vm_of(namespace, snap.spec.vm)
        if vm is None and young(snap):  # this agent's VM watch may be a moment behind the snapshot's
            self.queue.add_after(key_of(snap), 1.0)
            return
        if vm is None or vm.metadata.deletion_timestamp is not None:
            why = "is being deleted" if vm is not None else f"is not on host {self.config.node_name}"
            await self._failed(snap, "VMNotFound", f"VirtualMachine {namespace}/{snap.spec.vm} {why}")
            return
        if (vm.metadata.annotations or {}).get(names.MIGRATING_ANNOTATION):  # the migration has the domain
            await self._status(snap, "Pending", vm_uid=vm.metadata.uid, reason=("Migrating", MIGRATING))
            self.queue.add_after(key_of(snap), RETRY_SECONDS)
            return
        dom, _ = await self.vms.find_domain(vm)
        if dom is None:  # not defined yet (waiting for an Image, or just placed): look again soon
            await self._status(snap, "Pending", vm_uid=vm.metadata.uid)
            self.queue.add_after(key_of(snap), RETRY_SECONDS)
            return
        await self._status(snap, "InProgress", vm_uid=vm.metadata.uid)
        name = _snapshots.libvirt_name(snap.name, snap.metadata.uid or "")
        about = f"Vapor snapshot {namespace}/{snap.name} of VirtualMachine {vm.name}"
        try:
            async with self.vms.holding(vm):
                taken = await self.libvirt.call(_snapshots.take, dom, name, about, snap.spec.include_memory)
        except _snapshots.SnapshotRefused as exc:
            await self._failed(snap, exc.reason, exc.message, vm)
            return
        status = VirtualMachineSnapshotStatus(
            phase="Ready",
            host=self.config.node_name,
            vm_uid=vm.metadata.uid,
            creation_time=taken.creation_time,
            size_bytes=taken.size_bytes,
            disks=taken.disks,
            memory=taken.memory,
            conditions=[snap.condition_after(names.ConditionType.READY, "True", "Taken", _summary(taken))],
        )
        await self.snapshots.apply_status(
            snap.name, status, namespace=namespace, field_manager=names.FIELD_MANAGER_AGENT, force=True
        )
        await self.event(vm, "SnapshotTaken", f"Took snapshot {snap.name}: {_summary(taken)}.", "Snapshot")

    async def _delete(self, snap: VirtualMachineSnapshot) -> None:
        namespace = snap.metadata.namespace or ""
        finalizers = list(snap.metadata.finalizers or [])
        if SNAPSHOT_FINALIZER not in finalizers:
            return
        vm = self.vm_of(namespace, snap.spec.vm)
        uid = snap.status.vm_uid if snap.status else None
        if vm is not None and uid is not None and vm.metadata.uid == uid:
            dom, _ = await self.vms.find_domain(vm)
            if dom is not None:
                if snap.phase != "Deleting":
                    await self._status(snap, "Deleting", vm_uid=uid, keep=True)
                name = _snapshots.libvirt_name(snap.name, snap.metadata.uid or "")
                async with self.vms.holding(vm):
                    merged = await self.libvirt.call(_snapshots.drop, dom, name)
                if merged:
                    await self.event(vm, "SnapshotDeleted", f"Merged snapshot {snap.name} away.", "DeleteSnapshot")
        with contextlib.suppress(NotFound):
            await self.snapshots.patch(
                snap.name,
                metadata=MetadataPatch(finalizers=[f for f in finalizers if f != SNAPSHOT_FINALIZER]),
                namespace=namespace,
                field_manager=names.FIELD_MANAGER_AGENT,
            )
        log.info("snapshot gone from the disks", extra={"snapshot": f"{namespace}/{snap.name}"})

    async def vm_removed(self, vm: VirtualMachine) -> None:
        """``vm``'s domain and disks are gone: delete its snapshots and restores (they point at nothing now)."""
        namespace, uid = vm.metadata.namespace or "", vm.metadata.uid
        restores = self.kube.resources(VirtualMachineRestore)
        for snap in self.informer.items():
            taken_of = snap.status.vm_uid if snap.status else None
            if snap.metadata.namespace == namespace and snap.spec.vm == vm.name and taken_of in (uid, None):
                with contextlib.suppress(NotFound):
                    await self.snapshots.delete(snap.name, namespace)
        listed, _ = await restores.list(namespace, label_selector=f"{names.HOST_LABEL}={self.config.node_name}")
        for restore in listed:
            if restore.spec.vm == vm.name:
                with contextlib.suppress(NotFound):
                    await restores.delete(restore.name, namespace)

    async def _failed(
        self, snap: VirtualMachineSnapshot, reason: str, message: str, vm: VirtualMachine | None = None
    ) -> None:
        log.warning("snapshot failed", extra={"snapshot": snap.name, "reason": reason, "error": message})
        await self._status(snap, "Failed", vm_uid=vm.metadata.uid if vm else None, reason=(reason, message))
        if vm is not None:
            await self.event(vm, reason, f"Snapshot {snap.name} failed: {message}", "Snapshot", "Warning")

    async def _status(
        self,
        snap: VirtualMachineSnapshot,
        phase: SnapshotPhase,
        *,
        vm_uid: str | None,
        reason: tuple[str, str] | None = None,
        keep: bool = False,
    ) -> None:
        """Write ``phase`` (and why it failed); ``keep``: leave the Ready snapshot's other fields as they were."""
        before = snap.status or VirtualMachineSnapshotStatus()
        status = before.model_copy() if keep else VirtualMachineSnapshotStatus(host=self.config.node_name)
        status.phase, status.vm_uid = phase, vm_uid
        status.failure_reason = reason[1] if reason and phase == "Failed" else None
        cond_status: ConditionStatus = "False" if reason or phase != "Ready" else "True"
        why, message = reason or (phase, f"snapshot is {phase}")
        status.conditions = [snap.condition_after(names.ConditionType.READY, cond_status, why, message)]
        said = snap.condition(names.ConditionType.READY)
        if (before.phase, before.failure_reason, before.vm_uid) == (phase, status.failure_reason, vm_uid) and (
            said is not None and said.message == message
        ):
            return
        await self.snapshots.apply_status(
            snap.name, status, namespace=snap.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT, force=True
        )

    async def event(self, vm: VirtualMachine, reason: str, note: str, action: str, kind: str = "Normal") -> None:
        """Record an Event about ``vm`` (a failed write of it is logged, not raised)."""
        try:
            await self.kube.events.record(
                vm, reason=reason, note=note[:1000], controller=CONTROLLER, action=action,
                type="Warning" if kind == "Warning" else "Normal",
            )  # fmt: skip
        except KubeError as exc:
            log.warning("could not record an event", extra={"reason": reason, "error": str(exc)})


def young(obj: VirtualMachineSnapshot | VirtualMachineRestore) -> bool:
    """Whether ``obj`` was made less than :data:`GRACE_SECONDS` ago (its VM may not have reached this agent yet)."""
    made = obj.metadata.creation_timestamp
    return made is not None and (datetime.now(UTC) - made).total_seconds() < GRACE_SECONDS


def _summary(taken: _snapshots.Taken) -> str:
    what = "disks and memory" if taken.memory else "disks"
    return f"{what} of {', '.join(taken.disks)}, {taken.size_bytes} bytes"
