"""``vaporctl snapshot VM``: POST /api/v1/vms/{id}/snapshots, a VirtualMachineSnapshot of the VM's disks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .names import vm_ref
from .output import size
from .power import VMArgument, WaitOption
from .session import NamespaceOption, client


def snapshot(
    ctx: typer.Context,
    vm: VMArgument,
    name: Annotated[
        str | None, typer.Option("--name", help="Name of the snapshot (default: the server picks one).")
    ] = None,
    memory: Annotated[bool, typer.Option("--memory", help="Include the memory of a running VM.")] = False,
    namespace: NamespaceOption = None,
    wait: WaitOption = 30,
) -> None:
    """Take a snapshot of a VM's disks (admin), with its memory when asked."""
    ref = vm_ref(vm, namespace)
    body: dict[str, Any] = {"include_memory": memory}
    if name is not None:
        body["name"] = name
    with client(ctx) as api:
        made = api.post(f"{ref.path}/snapshots", body, namespace=ref.namespace, wait=wait)
    phase = made.get("phase") or "Pending"
    held = f", {size(made['size_bytes'])}" if made.get("size_bytes") else ""
    covers = f", disks {', '.join(made['disks'])}" if made.get("disks") else ""
    print(f"Snapshot {made['namespace']}/{made['name']} of vm {made['vm']}: {phase}{held}{covers}.")
