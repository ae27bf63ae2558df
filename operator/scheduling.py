"""Placing VirtualMachines on hosts: the kopf side of :mod:`.placement`.

A VM without ``status.host`` is placed as soon as it is seen, and tried again
every few seconds while no host can take it (:mod:`.rechecks`). Placement binds the VM to the
chosen host (:meth:`.Ledger.bind_vm`: host, hostId, phase Scheduled, condition
Scheduled, then the host label that host's agent selects on), under the
ledger's lock, counting what admitted migrations bring to each host; the
chosen host then joins the fetchHosts of the VM's Images; a clone goes to
its source VM's host. A VM that cannot be placed says why in its Scheduled
condition (reason Unschedulable, or ImageNotFound / ImageFailed, or
CloneSourceNotFound / CloneSourceNotPlaced) and in a Warning Event, once
per distinct reason.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from vapor.kube import NotFound
from vapor.model import GROUP, VERSION, ConditionStatus, VirtualMachine, VirtualMachineStatus
from vapor.model.image import images_of
from vapor.model.names import ConditionType

from . import images, metrics
from ._state import Memo
from .ledger import Ledger, vm_key
from .placement import choose_host
from .settings import FIELD_MANAGER

log = logging.getLogger("vapor.operator.scheduling")


async def _set_scheduled(
    ledger: Ledger, vm: VirtualMachine, status: ConditionStatus, reason: str, message: str
) -> bool:
    """Apply the Scheduled condition; return whether it changed."""
    current = vm.condition(ConditionType.SCHEDULED)
    wanted = vm.condition_after(ConditionType.SCHEDULED, status, reason, message)
    if wanted.says_same_as(current):
        return False
    await ledger.kube.resources(VirtualMachine).apply_status(
        vm.name, VirtualMachineStatus(conditions=[wanted]), namespace=vm.metadata.namespace, field_manager=FIELD_MANAGER
    )
    return True


async def place(ledger: Ledger, vm: VirtualMachine) -> str | None:
    """Place one VM if it is not placed yet; return the chosen host's name, or None."""
    if vm.metadata.deletion_timestamp is not None or vm.host:
        return None
    kube = ledger.kube
    key = vm_key(vm)
    async with ledger.lock:
        vms = kube.resources(VirtualMachine)
        try:  # the event that woke us may be stale: decide on the object as it is now
            vm = await vms.get(vm.name, key[0])
        except NotFound:
            return None
        if vm.metadata.deletion_timestamp is not None or vm.host:
            return None
        source = ledger.vm(key[0], vm.spec.clone_from.vm) if vm.spec.clone_from else None
        decision = choose_host(
            vm, ledger.hosts(), ledger.carried(exclude=key), ledger.cpu_ratio, ledger.images(), source
        )
        if decision.host is None:
            changed = await _set_scheduled(ledger, vm, "False", decision.reason, decision.message)
            if vm.phase in (None, "Pending"):
                await vms.patch_status(
                    vm.name, VirtualMachineStatus(phase="Unschedulable"), namespace=key[0], field_manager=FIELD_MANAGER
                )
            if changed:
                log.info("vm=%s/%s unschedulable: %s", key[0], vm.name, decision.message)
                await kube.events.record(
                    vm,
                    reason="FailedScheduling",
                    note=decision.message,
                    controller="operator",
                    action="Schedule",
                    type="Warning",
                )
            return None
        host = decision.host
        scheduled = vm.condition_after(ConditionType.SCHEDULED, "True", "Scheduled", decision.message)
        try:
            await ledger.bind_vm(vm, host, phase="Scheduled", condition=scheduled)
        except NotFound:
            return None
    log.info("vm=%s/%s placed host=%s (%s)", key[0], vm.name, host.name, decision.message)
    metrics.VMS_PLACED.inc()
    await images.sync_named(ledger, images_of(vm))  # the chosen host joins the Images' fetchHosts
    await kube.events.record(
        vm,
        reason="Scheduled",
        note=f"Placed on host {host.name}: {decision.message}",
        controller="operator",
        action="Schedule",
    )
    return host.name


def _unplaced(status: kopf.Status, meta: kopf.Meta, **_: Any) -> bool:
    return not status.get("host") and meta.get("deletionTimestamp") is None


@kopf.on.event(GROUP, VERSION, "virtualmachines", when=_unplaced)
async def vm_changed(type: str, body: kopf.Body, memo: Memo, **_: Any) -> None:
    """Place a VM the moment it is seen unplaced."""
    if type != "DELETED":
        await place(memo.books, VirtualMachine.from_api(dict(body)))

