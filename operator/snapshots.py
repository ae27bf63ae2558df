"""VirtualMachineSnapshots and VirtualMachineRestores reach the agent of their VM's host.

The agents select snapshots and restores by the ``vapor.io/host`` label, as
they select VMs. The operator copies the VM's host onto each one (and again
when the VM is placed later), and makes the VM its owner, so that a cluster's
garbage collector removes a deleted VM's snapshots and restores (the VM's
agent also deletes them when it removes the domain: the dev control plane
runs no garbage collector). One that names a VM that does not exist is
Failed at once, saying so. A VM with snapshots cannot migrate: see the
SnapshotsKept pre-flight in :mod:`vapor.rules.migrations`.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vapor.kube import NotFound
from vapor.model import GROUP, VERSION, MetadataPatch, VirtualMachine
from vapor.model.names import HOST_LABEL, ConditionType
from vapor.model.snapshot import (
    VirtualMachineRestore,
    VirtualMachineRestoreStatus,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotStatus,
)

from ._state import Memo
from .ledger import Ledger
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.snapshots")

Kind = type[VirtualMachineSnapshot] | type[VirtualMachineRestore]


def owner_reference(vm: VirtualMachine) -> dict[str, Any]:
    """The VM as the owner of its snapshots and restores (deleting them never waits for the VM)."""
    return {"apiVersion": vm.api_version, "kind": vm.kind, "name": vm.name, "uid": vm.metadata.uid}


def wanted_metadata(obj: VirtualMachineSnapshot | VirtualMachineRestore, vm: VirtualMachine) -> MetadataPatch | None:
    """The host label and owner reference ``obj`` lacks, or None when it has them."""
    labels = obj.metadata.labels or {}
    owners = list(obj.metadata.owner_references or [])
    owned = any(o.get("uid") == vm.metadata.uid for o in owners)
    if labels.get(HOST_LABEL) == vm.host and owned:
        return None
    return MetadataPatch(
        labels={HOST_LABEL: vm.host},
        owner_references=owners if owned else [*owners, owner_reference(vm)],
        resource_version=obj.metadata.resource_version,
    )


async def label(ledger: Ledger, kind: Kind, namespace: str, name: str) -> None:
    """Give one snapshot or restore its VM's host label and owner, or fail it when the VM does not exist."""
    resources = ledger.kube.resources(kind)
    try:
        obj = await resources.get(name, namespace)
    except NotFound:
        return
    if obj.metadata.deletion_timestamp is not None or obj.status is not None:
        return  # the agent has it (or it ended)
    vm = ledger.vm(namespace, obj.spec.vm)
    if vm is None:
        try:  # the ledger's watch may be a moment behind a VM made together with it
            vm = await ledger.kube.resources(VirtualMachine).get(obj.spec.vm, namespace)
        except NotFound:
            await _refuse(ledger, obj, f"VirtualMachine {namespace}/{obj.spec.vm} does not exist")
            return
    host = (vm.metadata.labels or {}).get(HOST_LABEL)
    if not host or host != vm.host:
        return  # labelled once the VM is placed and labelled (vm_placed): its agent then sees the VM first
    patch = wanted_metadata(obj, vm)
    if patch is not None:
        await resources.patch(name, metadata=patch, namespace=namespace, field_manager=FIELD_MANAGER)
        log.info("%s %s/%s goes to host %s", kind.__name__, namespace, name, vm.host)


async def _refuse(ledger: Ledger, obj: VirtualMachineSnapshot | VirtualMachineRestore, message: str) -> None:
    ready = obj.condition_after(ConditionType.READY, "False", "VMNotFound", message)
    status: VirtualMachineSnapshotStatus | VirtualMachineRestoreStatus
    if isinstance(obj, VirtualMachineSnapshot):
        status = VirtualMachineSnapshotStatus(phase="Failed", failure_reason=message, conditions=[ready])
    else:
        status = VirtualMachineRestoreStatus(phase="Failed", failure_reason=message, conditions=[ready])
    await ledger.kube.resources(type(obj)).apply_status(
        obj.name, status, namespace=obj.metadata.namespace, field_manager=FIELD_MANAGER
    )


# -- kopf ------------------------------------------------------------------------------------------


def _unclaimed(status: kopf.Status, **_: Any) -> bool:
    return not status.get("phase")


@kopf.on.event(GROUP, VERSION, "virtualmachinesnapshots", when=_unclaimed)
async def snapshot_changed(type: str, namespace: str | None, name: str, memo: Memo, **_: Any) -> None:
    """A new snapshot goes to its VM's host."""
    if type != "DELETED":
        await label(memo.books, VirtualMachineSnapshot, namespace or "", name)


@kopf.on.event(GROUP, VERSION, "virtualmachinerestores", when=_unclaimed)
async def restore_changed(type: str, namespace: str | None, name: str, memo: Memo, **_: Any) -> None:
    """A new restore goes to its VM's host."""
    if type != "DELETED":
        await label(memo.books, VirtualMachineRestore, namespace or "", name)


def _placed(status: kopf.Status, labels: kopf.Labels, memo: Memo, **_: Any) -> bool:
    # Every change of every placed VM comes here: the handler runs only while some snapshot waits for a host.
    placed = bool(status.get("host")) and labels.get(HOST_LABEL) == status.get("host")
    return placed and memo.books.snapshots_wait()


@kopf.on.event(GROUP, VERSION, "virtualmachines", when=_placed)
async def vm_placed(type: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """A VM placed after its snapshots were asked for: they go to its host now."""
    if type == "DELETED":
        return
    vm = VirtualMachine.from_api(dict(body))
    for snap in memo.books.snapshots_of(vm):
        if snap.status is None and (snap.metadata.labels or {}).get(HOST_LABEL) != vm.host:
            await label(memo.books, VirtualMachineSnapshot, vm.metadata.namespace or "", snap.name)
