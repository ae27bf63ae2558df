"""A VM's snapshots as the gateway reads them, for the routes that need them (snapshots, migrations)."""

from __future__ import annotations

from datetime import UTC, datetime

from vapor.agentapi.errors import CONFLICT
from vapor.model import VirtualMachine
from vapor.model.snapshot import VirtualMachineSnapshot

from ._errors import APIError
from ._state import gateway

_EPOCH = datetime.min.replace(tzinfo=UTC)


async def snapshots_of(vm: VirtualMachine) -> list[VirtualMachineSnapshot]:
    """The snapshots of ``vm`` (not those of an earlier VM of that name), oldest first."""
    items, _ = await gateway().kube.resources(VirtualMachineSnapshot).list(vm.metadata.namespace)
    mine = [
        s for s in items if s.spec.vm == vm.name and (s.status is None or s.status.vm_uid in (None, vm.metadata.uid))
    ]
    return sorted(mine, key=lambda s: (s.metadata.creation_timestamp or _EPOCH, s.name))


async def refuse_to_move_snapshots(vm: VirtualMachine) -> None:
    """409 for a migration of a VM with snapshots: they live in its disks on its host and would be lost."""
    kept = [s.name for s in await snapshots_of(vm) if s.phase != "Failed"]
    if kept:
        shown = ", ".join(kept[:5]) + (" ..." if len(kept) > 5 else "")
        raise APIError(
            409,
            CONFLICT,
            f"virtual machine {vm.name!r} has {len(kept)} snapshot(s) ({shown}) inside its disks on host "
            f"{vm.host!r}, which a migration would lose: delete them first",
            f"DELETE /api/v1/vms/{vm.metadata.uid}/snapshots/{{name}}",
        )
