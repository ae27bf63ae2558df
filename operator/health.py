"""Host health: each Host's Ready condition follows its agent's Lease.

The Leases are indexed from their watch, so checking a host costs no call to
the API server. When a host turns NotReady its VMs are marked Unknown (their
agent can no longer say what they are), and the change is recorded as an
Event; when the Lease is renewed the host is Ready again and its agent
reports its VMs' real phases. The operator also keeps ``status.vmCount``,
``status.allocatable`` and ``status.allocated`` (from the ledger).
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import kopf

from vapor.model import GROUP, VERSION, Host, HostStatus, VirtualMachine, VirtualMachineStatus
from vapor.model.host import HostResources
from vapor.model.names import ConditionType

from ._state import Memo
from .lease import Heartbeat, heartbeat_of, judge
from .ledger import VMKey, vm_key
from .settings import FIELD_MANAGER, HEALTH_INTERVAL, LEASE_NAMESPACE

log = logging.getLogger("vapor.operator.health")


def _in_lease_namespace(namespace: str | None, **_: Any) -> bool:
    return namespace == LEASE_NAMESPACE


@kopf.index("coordination.k8s.io", "v1", "leases", when=_in_lease_namespace)
def heartbeats(name: str, body: kopf.Body, **_: Any) -> dict[str, Heartbeat] | None:
    """The last renewal of every host Lease, by host name."""
    beat = heartbeat_of(body)
    return {name: beat} if beat else None


@kopf.timer(GROUP, VERSION, "hosts", interval=HEALTH_INTERVAL)
async def check_host(
    name: str,
    body: kopf.Body,
    memo: Memo,
    **kwargs: Any,
) -> None:
    """Keep the Host's Ready condition, VM count and allocation true; mark VMs Unknown when the host is lost."""
    heartbeats: kopf.Index[str, Heartbeat] = kwargs["heartbeats"]  # kopf hands every index over by its name
    state = memo
    ledger = state.books
    kube = ledger.kube
    host = Host.from_api(dict(body))
    now = dt.datetime.now(dt.UTC)
    beats = list(heartbeats.get(name, []))
    verdict = judge(max(beats, key=lambda b: b.renewed) if beats else None, now)
    vm_count = ledger.vm_count(name)
    offered, given = ledger.allocation(host)
    allocatable = HostResources(cpu=offered.cpu, memory=offered.memory) if offered else None
    allocated = HostResources(cpu=given.cpu, memory=given.memory)
    current = host.condition(ConditionType.READY)
    wanted = host.condition_after(
        ConditionType.READY, "True" if verdict.ready else "False", verdict.reason, verdict.message, observe=False
    )
    written = host.status or HostStatus()
    if (
        wanted.says_same_as(current)
        and written.vm_count == vm_count
        and written.allocatable == allocatable
        and written.allocated == allocated
    ):
        return
    await kube.resources(Host).apply_status(
        name,
        HostStatus(conditions=[wanted], vm_count=vm_count, allocatable=allocatable, allocated=allocated),
        field_manager=FIELD_MANAGER,
    )
    was_ready = current is not None and current.status == "True"
    if verdict.ready == was_ready and current is not None:
        return
    if verdict.ready:
        log.info("host=%s Ready: %s", name, verdict.message)
        await kube.events.record(
            host, reason="HostReady", note=verdict.message, controller="operator", action="Heartbeat"
        )
        return
    log.warning("host=%s NotReady: %s", name, verdict.message)
    await kube.events.record(
        host, reason="HostNotReady", note=verdict.message, controller="operator", action="Heartbeat", type="Warning"
    )
    await _mark_unknown(state, name, {vm_key(vm) for vm in ledger.on_host(name)})


async def _mark_unknown(state: Memo, host: str, vm_keys: set[VMKey]) -> None:
    """The VMs of a lost host: phase Unknown, with an Event each."""
    kube = state.books.kube
    vms = kube.resources(VirtualMachine)
    for namespace, name in sorted(vm_keys):
        try:
            vm = await vms.get(name, namespace)
            if vm.status is not None and vm.status.phase == "Unknown":
                continue
            vm = await vms.patch_status(
                name, VirtualMachineStatus(phase="Unknown"), namespace=namespace, field_manager=FIELD_MANAGER
            )
        except kopf.PermanentError:
            raise
        except Exception as exc:  # one VM must not keep the others from being marked
            log.warning("vm=%s/%s could not be marked Unknown: %s", namespace, name, exc)
            continue
        await kube.events.record(
            vm,
            reason="HostNotReady",
            note=f"host {host} stopped reporting; VM state unknown",
            controller="operator",
            action="Heartbeat",
            type="Warning",
        )
