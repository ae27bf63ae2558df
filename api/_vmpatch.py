"""A change of a VM over REST (PATCH /api/v1/vms/{id}): the body, the merge with the stored spec, and its checks.

The body takes the create request's types (_vmschema), so a value POST
refuses PATCH refuses too. The fields given are merged into the stored spec
(a list replaces the whole list; null removes an optional field), and the
result is checked as a whole before anything is written: memory within
max_memory, cpu within max_cpu, no disk smaller than it is, every Image
there, cloud-init usable. The patch then carries the resourceVersion it was
made from, so a write that came in between makes it fail (409) instead of
being overwritten. kubectl edits of the same fields are checked by the CRD's
rules (vapor/model) and carried out by the agent the same way.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, ValidationError

from vapor.agentapi.errors import INVALID_INPUT
from vapor.model import DiskSpec, NetworkSpec, VirtualMachineSpec, quantity_bytes
from vapor.model.cloudinit import CloudInitSpec
from vapor.model.virtualmachine import RunStrategy

from ._cloudinit import checked_cloud_init
from ._errors import APIError
from ._lookups import check_disk_images
from ._schema import FieldError, Strict
from ._vmschema import MAX_CPU, MAX_MEMORY, CloudInitRequest, CPUCount, Disks, GraceSeconds, Memory, Networks

UNPROCESSABLE = 422
REQUIRED = ("cpu", "memory", "run_strategy", "graceful_shutdown_seconds")  # a VM always has these: no null


class PatchVMRequest(Strict):
    """Changes of a VM: any of these fields, each checked as POST /api/v1/vms checks it.

    A list (disks, networks) replaces the whole list: send every disk the VM
    keeps. null removes max_cpu, max_memory, disks, networks or cloud_init.
    """

    cpu: CPUCount | None = Field(default=None, description="vCPUs; live up to max_cpu, else at the next start.")
    max_cpu: CPUCount | None = Field(default=None, description=MAX_CPU + " Takes effect at the next start.")
    memory: Memory | None = Field(
        default=None, description="Memory (quantity or MiB); live through the balloon up to max_memory."
    )
    max_memory: Memory | None = Field(default=None, description=MAX_MEMORY + " Takes effect at the next start.")
    disks: Disks | None = Field(
        default=None,
        description=(
            "Every disk of the VM (the whole list). A running VM gets a new disk attached and a bigger size "
            "(never smaller) live; a removed disk is detached when the guest lets it go; other changes of a disk "
            "wait for the next start."
        ),
    )
    networks: Networks | None = Field(
        default=None,
        description="Every network card of the VM (the whole list); new ones are attached live, removed ones detached.",
    )
    cloud_init: CloudInitRequest | None = Field(
        default=None, description="Replaces the cloud-init configuration; the guest reads it at its next boot."
    )
    run_strategy: RunStrategy | None = None
    graceful_shutdown_seconds: GraceSeconds | None = None


def _refused(field: str, message: str) -> APIError:
    fields = [FieldError(field=field, message=message)]
    return APIError(UNPROCESSABLE, INVALID_INPUT, f"{field}: {message}", fields=fields)


def ceiling_problems(spec: VirtualMachineSpec) -> APIError | None:
    """Refusal of a spec whose cpu or memory is above its ceiling (422, the field named), else None."""
    if spec.max_cpu is not None and spec.cpu > spec.max_cpu:
        return _refused("cpu", f"cpu {spec.cpu} is above max_cpu {spec.max_cpu}; raise max_cpu too")
    if spec.max_memory is not None and quantity_bytes(spec.memory) > quantity_bytes(spec.max_memory):
        return _refused("memory", f"memory {spec.memory} is above max_memory {spec.max_memory}; raise max_memory too")
    return None


def _shrunk(old: VirtualMachineSpec, new: VirtualMachineSpec) -> APIError | None:
    before = {d.name: quantity_bytes(d.size) for d in old.disks or [] if d.size is not None}
    for index, disk in enumerate(new.disks or []):
        was = before.get(disk.name)
        if was is not None and disk.size is not None and quantity_bytes(disk.size) < was:
            return _refused(f"disks[{index}].size", f"disk {disk.name} is {was} bytes; a disk can grow, never shrink")
    return None


async def _changes(data: PatchVMRequest, namespace: str) -> dict[str, Any]:
    """The spec fields the request sets (None: removed), in the model's types."""
    given = data.model_fields_set
    for name in REQUIRED:
        if name in given and getattr(data, name) is None:
            raise _refused(name, "a VM always has one; give a value instead of null")
    changes: dict[str, Any] = {name: getattr(data, name) for name in given}
    if data.disks is not None:
        await check_disk_images([d.image for d in data.disks])
        changes["disks"] = [DiskSpec.model_validate(d.model_dump(exclude_none=True)) for d in data.disks]
    if data.networks is not None:
        changes["networks"] = [NetworkSpec.model_validate(n.model_dump(exclude_none=True)) for n in data.networks]
    if data.cloud_init is not None:
        checked = await checked_cloud_init(data.cloud_init, namespace)
        # Every field set (None ones too): the merge patch then replaces the stored cloud-init, not adds to it.
        changes["cloud_init"] = CloudInitSpec.model_validate(checked.model_dump() if checked else {})
    return changes


async def merged_spec(
    data: PatchVMRequest, old: VirtualMachineSpec, namespace: str
) -> tuple[VirtualMachineSpec, VirtualMachineSpec]:
    """(the patch, the spec it makes) for ``data`` on the stored spec ``old``; 422 naming the field when refused."""
    changes = await _changes(data, namespace)
    try:
        patch = VirtualMachineSpec.partial(**changes)
        merged = VirtualMachineSpec.model_validate({**old.model_dump(exclude_unset=True), **changes})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"]) or "body"
        raise _refused(field, str(first["msg"]).removeprefix("Value error, ")) from None
    problem = ceiling_problems(merged) or _shrunk(old, merged)
    if problem is not None:
        raise problem
    return patch, merged


def describe(data: PatchVMRequest) -> str:
    """The fields a request changes, for the audit Event."""
    return ", ".join(sorted(data.model_fields_set)) or "nothing"
