"""How a Host and a VirtualMachine read over REST: flat, snake_case, with every field of the contract."""

from __future__ import annotations

from typing import Any, Literal

from vapor.model import Host, VirtualMachine, quantity_bytes
from vapor.model.names import ConditionType

from ._schema import HostView, VMView

HostState = Literal["connected", "disconnected", "unknown"]


def _dump(model: Any) -> Any:
    """A model part in snake_case, unset fields left out; None stays None."""
    if model is None:
        return None
    return model.model_dump(mode="json", exclude_none=True)


def host_status(host: Host) -> HostState:
    """Say connected when the Ready condition is True, disconnected when it is not, unknown without one."""
    for condition in (host.status.conditions if host.status else None) or []:
        if condition.type == ConditionType.READY:
            return "connected" if condition.status == "True" else "disconnected"
    return "unknown"


def host_view(host: Host) -> HostView:
    """The REST form of a Host."""
    status = host.status
    return HostView(
        id=status.id if status else None,
        name=host.name,
        hostname=status.hostname if status else None,
        status=host_status(host),
        sync_cursor=status.sync_cursor if status else None,
        os=status.os if status else None,
        kernel=status.kernel if status else None,
        uptime=status.uptime_seconds if status else None,
        load_average=status.load_average if status else None,
        cpu=_dump(status.cpu) if status else None,
        memory=_dump(status.memory) if status else None,
        interfaces=[_dump(i) for i in (status.interfaces or [])] if status else [],
        disks=[_dump(d) for d in (status.disks or [])] if status else [],
        hypervisor=_dump(status.hypervisor) if status else None,
        capacity=_dump(status.capacity) if status else None,
        maintenance=host.spec.maintenance,
        vm_count=(status.vm_count or 0) if status else 0,
        labels=host.metadata.labels or {},
    )


def vm_view(vm: VirtualMachine) -> VMView:
    """The REST form of a VirtualMachine."""
    spec, status = vm.spec, vm.status
    phase = status.phase if status else None
    return VMView(
        id=vm.metadata.uid or "",
        name=vm.name,
        namespace=vm.metadata.namespace or "",
        status=phase or "Pending",
        phase=phase,
        run_strategy=spec.run_strategy,
        cpu=spec.cpu,
        memory=str(spec.memory),
        memory_bytes=quantity_bytes(spec.memory),
        disks=[_dump(d) for d in spec.disks or []],
        networks=[_dump(n) for n in spec.networks or []],
        host_selector=spec.host_selector,
        host=status.host if status else None,
        host_id=status.host_id if status else None,
        domain_uuid=status.domain_uuid if status else None,
        addresses=(status.addresses or []) if status else [],
        last_restart_request=status.last_restart_request if status else None,
        conditions=[_dump(c) for c in (status.conditions or [])] if status else [],
        created_at=vm.metadata.creation_timestamp.isoformat() if vm.metadata.creation_timestamp else None,
        deleting=vm.metadata.deletion_timestamp is not None,
    )
