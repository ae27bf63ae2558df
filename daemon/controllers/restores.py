"""VirtualMachineRestores of the VMs on this host: a stopped VM put back to one of its snapshots, once.

The agent watches the restores labelled ``vapor.io/host=<node>`` (labelled
like the snapshots). A restore runs once: Succeeded or Failed, it is never
looked at again, so a GitOps tool that applies it twice does not restore
twice. It is refused (Failed, with the reason) when the snapshot is missing,
not Ready, of another VM or of an earlier VM of that name, or when the VM
is not stopped: its runStrategy must be Halted and its domain shut off
("stop the VM first"). A restore waits while its snapshot is still being taken.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import libvirt  # type: ignore[import-untyped]

from vapor.kube import Kube, KubeError, NotFound
from vapor.kube._informer import Key, key_of
from vapor.model import ConditionStatus, names
from vapor.model.snapshot import (
    RestorePhase,
    VirtualMachineRestore,
    VirtualMachineRestoreStatus,
    VirtualMachineSnapshot,
)

from .._config import AgentConfig
from ..host import snapshots as _snapshots
from ..host.libvirt import Libvirt
from ..host.snapshots import SnapshotRefused as Refused
from .loop import NodeController
from .snapshots import SnapshotController, young
from .vmstatus import ACTIVE, VMError

log = logging.getLogger("vapor.agent.restores")

STOP_FIRST = "stop the VM first"
RETRY_SECONDS = 5.0


class RestoreController(NodeController[VirtualMachineRestore]):
    """Carries out the restores of this node's VMs, each at most once."""

    def __init__(self, kube: Kube, config: AgentConfig, libvirt_conn: Libvirt, snapshots: SnapshotController) -> None:
        super().__init__(kube, VirtualMachineRestore, config)
        self.libvirt = libvirt_conn
        self.snapshots = snapshots
        self.restores = kube.resources(VirtualMachineRestore)
        # A snapshot that turns Ready may let a waiting restore go on.
        snapshots.informer.on_change(lambda _event: self.resync_all())

    async def start(self) -> None:
        """Watch this node's restores and look at each unfinished one now."""
        await self.watch()
        self.run(self.reconcile, name="restores")
        log.info("watching restores", extra={"node": self.config.node_name})

    async def reconcile(self, key: Key) -> None:
        """Run one restore, when it has not run yet."""
        restore = self.informer.get(key[1], key[0])
        if restore is None or restore.is_terminal or restore.metadata.deletion_timestamp is not None:
            return
        try:
            await self._run(restore)
        except Refused as exc:
            await self._finish(restore, "Failed", exc.reason, exc.message)
        except NotFound:
            return
        except (KubeError, libvirt.libvirtError, VMError) as exc:
            log.warning("restore failed; retrying", extra={"restore": "/".join(key), "error": str(exc)})
            self.queue.add_after(key, RETRY_SECONDS)

    def _snapshot(self, restore: VirtualMachineRestore) -> VirtualMachineSnapshot | None:
        """The snapshot to go back to (this node's snapshots cover every snapshot of its VMs)."""
        return self.snapshots.informer.get(restore.spec.snapshot, restore.metadata.namespace)

    async def _run(self, restore: VirtualMachineRestore) -> None:
        namespace = restore.metadata.namespace or ""
        snap = self._snapshot(restore)
        if snap is None or snap.metadata.deletion_timestamp is not None:
            raise Refused(
                "SnapshotNotFound", f"VirtualMachineSnapshot {namespace}/{restore.spec.snapshot} does not exist"
            )
        if snap.spec.vm != restore.spec.vm:
            raise Refused("WrongVM", f"snapshot {snap.name} is of VirtualMachine {snap.spec.vm}, not {restore.spec.vm}")
        if snap.phase in (None, "Pending", "InProgress"):
            await self._status(restore, "Pending", "SnapshotNotReady", f"waiting for snapshot {snap.name} to be taken")
            return  # the snapshot's change queues it again
        if snap.phase != "Ready":
            why = f": {snap.status.failure_reason}" if snap.status and snap.status.failure_reason else ""
            raise Refused("SnapshotNotReady", f"snapshot {snap.name} is {snap.phase}{why}")
        vm = self.snapshots.vm_of(namespace, restore.spec.vm)
        if vm is None and young(restore):  # this agent's VM watch may be a moment behind
            self.queue.add_after(key_of(restore), 1.0)
            return
        if vm is None or vm.metadata.deletion_timestamp is not None:
            raise Refused(
                "VMNotFound", f"VirtualMachine {namespace}/{restore.spec.vm} is not on host {self.config.node_name}"
            )
        if snap.status is None or snap.status.vm_uid != vm.metadata.uid:
            raise Refused("WrongVM", f"snapshot {snap.name} was taken of an earlier VirtualMachine named {vm.name}")
        if vm.spec.run_strategy != "Halted":
            raise Refused("VMRunning", f"{STOP_FIRST}: its runStrategy is {vm.spec.run_strategy}, not Halted")
        dom, _ = await self.snapshots.vms.find_domain(vm)
        if dom is None:
            raise Refused("SnapshotMissing", f"VirtualMachine {vm.name} has no domain on this host, nor its snapshots")
        state, _ = await self.libvirt.call(dom.state)
        if state in ACTIVE:
            raise Refused("VMRunning", f"{STOP_FIRST}: its runStrategy is Halted but the guest is still shutting down")
        await self._status(restore, "InProgress", "Restoring", f"putting {vm.name} back to snapshot {snap.name}")
        name = _snapshots.libvirt_name(snap.name, snap.metadata.uid or "")
        async with self.snapshots.vms.holding(vm):  # refusals (the snapshot is gone from the disks) fail it
            memory = await self.libvirt.call(_snapshots.revert, dom, name)
        what = "disks and memory (the next start resumes the guest)" if memory else "disks"
        await self._finish(restore, "Succeeded", "Restored", f"put back the {what} of snapshot {snap.name}")
        await self.snapshots.event(vm, "Restored", f"Restored snapshot {snap.name}: {what}.", "Restore")

    async def _finish(self, restore: VirtualMachineRestore, phase: RestorePhase, reason: str, message: str) -> None:
        log.info("restore ended", extra={"restore": "/".join(key_of(restore)), "phase": phase, "reason": reason})
        await self._status(restore, phase, reason, message, done=True)
        if phase == "Failed":
            vm = self.snapshots.vm_of(restore.metadata.namespace or "", restore.spec.vm)
            if vm is not None:
                note = f"Restore {restore.name} failed: {message}"
                await self.snapshots.event(vm, reason, note, "Restore", "Warning")

    async def _status(
        self, restore: VirtualMachineRestore, phase: RestorePhase, reason: str, message: str, *, done: bool = False
    ) -> None:
        before = restore.status
        if before is not None and before.phase == phase and not done:
            return
        ready: ConditionStatus = "True" if phase == "Succeeded" else "False"
        status = VirtualMachineRestoreStatus(
            phase=phase,
            host=self.config.node_name,
            completion_time=datetime.now(UTC) if done else None,
            failure_reason=message if phase == "Failed" else None,
            conditions=[restore.condition_after(names.ConditionType.READY, ready, reason, message)],
        )
        await self.restores.apply_status(
            restore.name, status, namespace=restore.metadata.namespace, field_manager=names.FIELD_MANAGER_AGENT
        )
