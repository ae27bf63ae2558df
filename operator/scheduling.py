"""Placing VirtualMachines on hosts: the kopf side of :mod:`.placement`.

A VM without ``status.host`` is placed as soon as it is seen, and tried again
every few seconds while no host can take it. Placement writes the VM's status
(host, hostId, phase Scheduled, condition Scheduled) and then the host label
that the chosen host's agent selects on, so the agent sees a VM only once it
is fully placed. A VM that cannot be placed says why in its Scheduled
condition and in a Warning Event, once per distinct reason.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from vapor.kube import Kube, NotFound
from vapor.model import GROUP, VERSION, ConditionStatus, Host, MetadataPatch, VirtualMachine, VirtualMachineStatus
from vapor.model.names import HOST_LABEL, ConditionType

from . import metrics
from ._state import Memo, VMKey
from .placement import Request, choose_host
from .settings import FIELD_MANAGER, RETRY_INTERVAL

log = logging.getLogger("vapor.operator.scheduling")


@kopf.index(GROUP, VERSION, "hosts")
def hosts_by_name(name: str, body: kopf.Body, **_: Any) -> dict[str, Host]:
    """Every Host, by name."""
    return {name: Host.from_api(dict(body))}


@kopf.index(GROUP, VERSION, "virtualmachines")
def vms_by_host(namespace: str, name: str, body: kopf.Body, **_: Any) -> dict[str, tuple[VMKey, Request]] | None:
    """The placed VMs of each host with what they take from it."""
    vm = VirtualMachine.from_api(dict(body))
    if vm.status is None or not vm.status.host:
        return None
    return {vm.status.host: ((namespace, name), Request.of(vm))}


def placed_requests(
    vms_index: kopf.Index[str, tuple[VMKey, Request]], memo: Memo, exclude: VMKey
) -> dict[str, list[Request]]:
    """What each host already carries: the index, plus this process's fresh placements."""
    seen: dict[VMKey, tuple[str, Request]] = {}
    for host, store in vms_index.items():
        for key, request in store:
            seen[key] = (host, request)
    seen.update(memo.reservations)
    seen.pop(exclude, None)
    placed: dict[str, list[Request]] = {}
    for host, request in seen.values():
        placed.setdefault(host, []).append(request)
    return placed


async def _set_scheduled(kube: Kube, vm: VirtualMachine, status: ConditionStatus, reason: str, message: str) -> bool:
    """Apply the Scheduled condition; return whether it changed."""
    current = vm.condition(ConditionType.SCHEDULED)
    wanted = vm.condition_after(ConditionType.SCHEDULED, status, reason, message)
    if wanted.says_same_as(current):
        return False
    await kube.resources(VirtualMachine).apply_status(
        vm.name, VirtualMachineStatus(conditions=[wanted]), namespace=vm.metadata.namespace, field_manager=FIELD_MANAGER
    )
    return True


async def place(vm: VirtualMachine, memo: Memo, hosts_index: Mapping[str, Any], vms_index: Any) -> str | None:
    """Place one VM if it is not placed yet; return the chosen host's name, or None."""
    if vm.metadata.deletion_timestamp is not None or (vm.status is not None and vm.status.host):
        return None
    kube = memo.kube
    assert kube is not None
    key: VMKey = (vm.metadata.namespace or "", vm.name)
    async with memo.placement_lock:
        vms = kube.resources(VirtualMachine)
        try:  # the event that woke us may be stale: decide on the object as it is now
            vm = await vms.get(vm.name, key[0])
        except NotFound:
            return None
        if vm.metadata.deletion_timestamp is not None or (vm.status is not None and vm.status.host):
            return None
        hosts = [h for store in hosts_index.values() for h in store]
        decision = choose_host(vm, hosts, placed_requests(vms_index, memo, key))
        if decision.host is None:
            changed = await _set_scheduled(kube, vm, "False", "Unschedulable", decision.message)
            if vm.status is None or vm.status.phase in (None, "Pending"):
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
        memo.reservations[key] = (host.name, Request.of(vm))
        try:
            await vms.patch_status(
                vm.name,
                VirtualMachineStatus(host=host.name, host_id=host.host_id, phase="Scheduled"),
                namespace=key[0],
                field_manager=FIELD_MANAGER,
            )
            await _set_scheduled(kube, vm, "True", "Scheduled", f"placed on host {host.name}")
            await vms.patch(
                vm.name,
                metadata=MetadataPatch(labels={HOST_LABEL: host.name}),
                namespace=key[0],
                field_manager=FIELD_MANAGER,
            )
        except NotFound:
            memo.reservations.pop(key, None)
            return None
    log.info("vm=%s/%s placed host=%s (%s)", key[0], vm.name, host.name, decision.message)
    metrics.VMS_PLACED.inc()
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


@kopf.on.event(GROUP, VERSION, "virtualmachines")
async def vm_changed(
    type: str,
    body: kopf.Body,
    memo: Any,
    hosts_by_name: kopf.Index[str, Host],
    vms_by_host: kopf.Index[str, tuple[VMKey, Request]],
    **_: Any,
) -> None:
    """Place a VM the moment it is seen unplaced; forget its reservation once it is gone."""
    state: Memo = memo
    if type == "DELETED":
        state.reservations.pop((body.metadata.namespace or "", body.metadata.name or ""), None)
        return
    await place(VirtualMachine.from_api(dict(body)), state, hosts_by_name, vms_by_host)


@kopf.timer(GROUP, VERSION, "virtualmachines", interval=RETRY_INTERVAL, when=_unplaced)
async def retry_placement(
    body: kopf.Body,
    memo: Any,
    hosts_by_name: kopf.Index[str, Host],
    vms_by_host: kopf.Index[str, tuple[VMKey, Request]],
    **_: Any,
) -> None:
    """Try again to place a VM no host could take (hosts come, go and free up)."""
    await place(VirtualMachine.from_api(dict(body)), memo, hosts_by_name, vms_by_host)
