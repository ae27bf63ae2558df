"""How Hosts, VirtualMachines, Migrations and Images read over REST: flat, snake_case, every field of the contract."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vapor.model import Host, Image, Migration, VirtualMachine, find_host, quantity_bytes
from vapor.model.names import REQUESTED_BY_ANNOTATION, ConditionType

from ._imageschema import ImageHostView, ImageView
from ._migrationschema import MigrationProgressView, MigrationView
from ._schema import HostState, HostView
from ._vmschema import VMView


def _dump(model: Any) -> Any:
    """A model part in snake_case, unset fields left out; None stays None."""
    if model is None:
        return None
    return model.model_dump(mode="json", exclude_none=True)


def host_status(host: Host) -> HostState:
    """Say connected when the Ready condition is True, disconnected when it is not, unknown without one."""
    if host.condition(ConditionType.READY) is None:
        return "unknown"
    return "connected" if host.is_ready else "disconnected"


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
        allocatable=_dump(status.allocatable) if status else None,
        allocated=_dump(status.allocated) if status else None,
        maintenance=host.spec.maintenance,
        drain=_dump(status.drain) if status else None,
        vm_count=(status.vm_count or 0) if status else 0,
        labels=host.metadata.labels or {},
    )


def vm_view(vm: VirtualMachine) -> VMView:
    """The REST form of a VirtualMachine."""
    spec, status = vm.spec, vm.status
    phase = vm.phase
    return VMView(
        id=vm.metadata.uid or "",
        name=vm.name,
        namespace=vm.metadata.namespace or "",
        status=phase or "Pending",
        phase=phase,
        run_strategy=spec.run_strategy,
        cpu=spec.cpu,
        max_cpu=spec.max_cpu,
        memory=str(spec.memory),
        memory_bytes=quantity_bytes(spec.memory),
        max_memory=str(spec.max_memory) if spec.max_memory is not None else None,
        disks=[_dump(d) for d in spec.disks or []],
        networks=[_dump(n) for n in spec.networks or []],
        host_selector=spec.host_selector,
        host=status.host if status else None,
        host_id=status.host_id if status else None,
        domain_uuid=status.domain_uuid if status else None,
        addresses=(status.addresses or []) if status else [],
        interfaces=[_dump(i) for i in (status.interfaces or [])] if status else [],
        last_restart_request=status.last_restart_request if status else None,
        pending_changes=(status.pending_changes or []) if status else [],
        conditions=[_dump(c) for c in (status.conditions or [])] if status else [],
        created_at=vm.metadata.creation_timestamp.isoformat() if vm.metadata.creation_timestamp else None,
        deleting=vm.metadata.deletion_timestamp is not None,
        clone_from=_dump(spec.clone_from),
    )


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def migration_view(m: Migration, hosts: Mapping[str, Host], vm: VirtualMachine | None) -> MigrationView:
    """The REST form of a Migration; ``hosts`` by name (for their ids), ``vm`` the VM it moves if it exists."""
    spec, status = m.spec, m.status
    source = status.source_host if status else None
    target = m.target_host or None
    if target is None and spec.destination_host:  # not decided yet: what was asked, by name or id
        asked = find_host(hosts.values(), spec.destination_host)
        target = asked.name if asked is not None else None

    def host_id(name: str | None) -> str | None:
        host = hosts.get(name) if name else None
        return host.host_id if host is not None else None

    p = status.progress if status else None
    progress = (
        MigrationProgressView(
            percent=p.percent,
            data_total=p.data_total_bytes,
            data_processed=p.data_processed_bytes,
            data_remaining=p.data_remaining_bytes,
            memory_iteration=p.memory_iteration,
            memory_dirty_rate=p.memory_dirty_rate,
            updated_at=_time(p.updated_at),
        )
        if p is not None
        else None
    )
    uid = m.metadata.uid or ""
    return MigrationView(
        id=uid,
        migration_id=uid,
        name=m.name,
        namespace=m.metadata.namespace or "",
        vm_id=vm.metadata.uid if vm is not None else None,
        vm_name=spec.vm_name,
        phase=m.phase or "Pending",
        live=spec.live,
        persistent=spec.persistent,
        undefine_source=spec.undefine_source,
        copy_storage=spec.copy_storage,
        bandwidth_mib_per_second=spec.bandwidth_mib_per_second,
        source_host_id=host_id(source),
        source_host_name=source,
        destination_host_id=host_id(target),
        destination_host_name=target,
        queue_position=status.queue_position if status else None,
        progress=progress,
        start_time=_time(status.start_time) if status else None,
        end_time=_time(status.end_time) if status else None,
        downtime_ms=status.downtime_ms if status else None,
        failure_reason=status.failure_reason if status else None,
        cancel_requested=spec.cancel,
        conditions=[_dump(c) for c in (status.conditions or [])] if status else [],
        requested_by=(m.metadata.annotations or {}).get(REQUESTED_BY_ANNOTATION),
        created_at=_time(m.metadata.creation_timestamp),
        deleting=m.metadata.deletion_timestamp is not None,
    )


def image_view(image: Image) -> ImageView:
    """The REST form of an Image."""
    spec, status = image.spec, image.status
    return ImageView(
        id=image.metadata.uid or "",
        name=image.name,
        source=_dump(spec.source),
        checksum=spec.checksum,
        format=spec.format,
        prefetch=_dump(spec.prefetch),
        phase=image.phase or "Pending",
        ready_hosts=(status.ready_hosts or 0) if status else 0,
        size=status.size if status else None,
        virtual_size=status.virtual_size if status else None,
        sha256=status.sha256 if status else None,
        fetch_hosts=(status.fetch_hosts or []) if status else [],
        hosts=[ImageHostView.model_validate(_dump(h)) for h in (status.hosts or [])] if status else [],
        conditions=[_dump(c) for c in (status.conditions or [])] if status else [],
        requested_by=(image.metadata.annotations or {}).get(REQUESTED_BY_ANNOTATION),
        created_at=_time(image.metadata.creation_timestamp),
        deleting=image.metadata.deletion_timestamp is not None,
    )
