"""A VM's migration pre-flight against every host, by the operator's own rules (:mod:`vapor.rules.migrations`).

For each host the gateway asks :func:`vapor.rules.migrations.check` what the
operator will ask once a Migration to that host exists: the same function
over the gateway's watch caches (Hosts, the VM, Migrations, Images) and the
VM's snapshots. What a host may give and has given are the operator's own
figures, as it last wrote them on the Host (``status.allocatable`` and
``status.allocated``: its ratio and its account of placed and arriving VMs);
a host it has not written them on yet is judged from its capacity, as the
operator judges it with the default ratio. Nothing is created or changed.
"""

from __future__ import annotations

from collections.abc import Sequence

from vapor.model import Condition, Host, Migration, MigrationSpec, ObjectMeta, VirtualMachine
from vapor.model.migration import CopyStorage
from vapor.model.snapshot import VirtualMachineSnapshot
from vapor.rules.images import IMAGE_FETCHING
from vapor.rules.migrations import check
from vapor.rules.placement import HostFacts, Request

from ._migrationschema import MigrationTarget, MigrationTargets, PreflightCheck
from ._state import gateway
from ._views import host_status

_OK = {"True": True, "False": False, "Unknown": None}
REFUSED = "Refused"  # the name of the one check of a host ruled out before the conditions are computed


def _written(hosts: Sequence[Host]) -> tuple[dict[str, list[Request]], dict[str, HostFacts]]:
    """What each host has given and may give, as the operator wrote them on it (hosts it has not: left out)."""
    placed: dict[str, list[Request]] = {}
    facts: dict[str, HostFacts] = {}
    for host in hosts:
        status = host.status
        if status is not None and status.allocated is not None:
            placed[host.name] = [Request(cpu=status.allocated.cpu, memory=status.allocated.memory)]
        if status is not None and status.allocatable is not None:
            offered = Request(cpu=status.allocatable.cpu, memory=status.allocatable.memory)
            facts[host.name] = HostFacts(ready=host.is_ready, offered=offered)
    return placed, facts


def _check(condition: Condition) -> PreflightCheck:
    """A Migration's pre-flight condition as a check: ImageFetching waits (null), it does not refuse."""
    ok = None if condition.reason == IMAGE_FETCHING else _OK[condition.status]
    return PreflightCheck(name=condition.type, ok=ok, reason=condition.reason, message=condition.message)


def migration_targets(
    vm: VirtualMachine, snapshots: Sequence[VirtualMachineSnapshot], copy_storage: CopyStorage, live: bool
) -> MigrationTargets:
    """Every host as ``vm``'s destination (by name), checked as the operator checks a Migration there."""
    state = gateway()
    hosts = sorted(state.hosts.items(), key=lambda h: h.name)
    placed, facts = _written(hosts)
    images = {i.name: i for i in state.images.items()}
    others = state.migrations.items()
    namespace = vm.metadata.namespace or ""
    targets = []
    for host in hosts:
        asked = Migration(  # the Migration a POST /vms/{id}/migrate to this host would create; never written
            metadata=ObjectMeta(name=vm.name, namespace=namespace),
            spec=MigrationSpec(vm_name=vm.name, destination_host=host.name, live=live, copy_storage=copy_storage),
        )
        result = check(asked, vm, hosts, placed, others, images=images, snapshots=snapshots, facts=facts)
        checks = [_check(c) for c in result.conditions]
        if result.refusal and not checks:
            checks = [PreflightCheck(name=REFUSED, ok=False, reason=None, message=result.refusal)]
        targets.append(
            MigrationTarget(
                host_id=host.host_id,
                host_name=host.name,
                status=host_status(host),
                can_take=result.refusal is None,
                refusal=result.refusal,
                checks=checks,
            )
        )
    return MigrationTargets(
        vm_id=vm.metadata.uid or "",
        vm_name=vm.name,
        namespace=namespace,
        source_host_name=vm.host,
        copy_storage=copy_storage,
        live=live,
        targets=targets,
    )
