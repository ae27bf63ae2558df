"""VirtualMachineSnapshot and VirtualMachineRestore: a VM's disks (and memory) kept, and put back (namespaced).

A snapshot is taken by the agent of the VM's host as libvirt snapshots inside
the VM's qcow2 disks (internal snapshots): nothing is copied, so taking one
costs milliseconds for a stopped VM and the time to write the guest's memory
for a running one with ``includeMemory``. Deleting a snapshot merges it away
(its finalizer holds the resource until the agent dropped it from the disks).

A restore is a resource of its own rather than a field of the snapshot: it is
an action with an outcome (it can fail, and says why), a record of who put a
VM back to which state and when, and a GitOps pipeline that applies it twice
does not restore twice (a Succeeded restore is never run again).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ._meta import Condition, Model, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource

SnapshotPhase = Literal["Pending", "InProgress", "Ready", "Failed", "Deleting"]
RestorePhase = Literal["Pending", "InProgress", "Succeeded", "Failed"]
RESTORE_TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed"})
VM_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
# Finalizer the agent of the VM's host holds on a snapshot until it is gone from the disks.
SNAPSHOT_FINALIZER = "vapor.io/snapshot"


def _immutable(what: str) -> dict[str, Any]:
    return {"x-kubernetes-validations": [{"rule": "self == oldSelf", "message": f"{what} is fixed once made"}]}


class VirtualMachineSnapshotSpec(Model):
    """Which VM to snapshot, and whether to keep its memory too."""

    vm: str = Field(
        description="Name of the VirtualMachine, in the snapshot's namespace.",
        pattern=VM_NAME_PATTERN,
        max_length=253,
        json_schema_extra=_immutable("vm"),
    )
    include_memory: bool = Field(
        default=False,
        description=(
            "For a running VM, also keep its memory and device state, so that a restore resumes the guest "
            "where it was instead of booting it (the snapshot grows by the guest's memory). A stopped VM "
            "has no memory to keep."
        ),
        json_schema_extra=_immutable("includeMemory"),
    )


class VirtualMachineSnapshotStatus(Model):
    """The snapshot as the agent of the VM's host made it."""

    phase: SnapshotPhase | None = Field(
        default=None,
        description="Pending (waiting for the VM's host), InProgress, Ready, Failed, or Deleting (being merged away).",
    )
    host: str | None = Field(default=None, description="Host whose disks hold the snapshot.")
    vm_uid: str | None = Field(
        default=None, description="uid of the VM it was taken of (a VM made again under the same name is another VM)."
    )
    creation_time: datetime | None = Field(default=None, description="When libvirt took it.")
    size_bytes: int | None = Field(
        default=None, ge=0, description="Bytes the snapshot holds in the disks (its changed clusters and memory)."
    )
    disks: list[str] | None = Field(default=None, description="Names of the VM's disks it covers.")
    memory: bool | None = Field(default=None, description="Whether the guest's memory and device state were kept.")
    failure_reason: str | None = Field(default=None, description="Why it could not be taken (for example a raw disk).")
    conditions: list[Condition] | None = conditions_field("snapshot")


class VirtualMachineSnapshot(Resource[VirtualMachineSnapshotSpec, VirtualMachineSnapshotStatus]):
    """The state of a VirtualMachine's disks, and optionally its memory, kept to go back to.

    Made by the agent of the VM's host inside the VM's qcow2 disks; restore it
    with a VirtualMachineRestore while the VM is stopped. Deleting it merges it
    away; the VM is untouched.
    """

    kind: Literal["VirtualMachineSnapshot"] = "VirtualMachineSnapshot"
    spec: VirtualMachineSnapshotSpec = Field(description="Which VM to snapshot, and whether to keep its memory too.")
    status: VirtualMachineSnapshotStatus | None = Field(default=None, description="The snapshot as it was made.")

    crd = CRDInfo(
        plural="virtualmachinesnapshots",
        scope="Namespaced",
        short_names=("vsnap",),
        printer_columns=(
            PrinterColumn("VM", ".spec.vm"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Memory", ".status.memory", "boolean", "Whether memory and device state were kept."),
            PrinterColumn("Size", ".status.sizeBytes", "integer", "Bytes the snapshot holds."),
            PrinterColumn("Host", ".status.host", priority=1),
            AGE,
        ),
    )

    @property
    def phase(self) -> SnapshotPhase | None:
        """status.phase, or None before the agent has seen the snapshot."""
        return self.status.phase if self.status else None


class VirtualMachineRestoreSpec(Model):
    """Which VM to put back, to which of its snapshots."""

    vm: str = Field(
        description="Name of the VirtualMachine, in the restore's namespace; it must be stopped (runStrategy Halted).",
        pattern=VM_NAME_PATTERN,
        max_length=253,
        json_schema_extra=_immutable("vm"),
    )
    snapshot: str = Field(
        description="Name of a Ready VirtualMachineSnapshot of that VM, in the same namespace.",
        pattern=VM_NAME_PATTERN,
        max_length=253,
        json_schema_extra=_immutable("snapshot"),
    )


class VirtualMachineRestoreStatus(Model):
    """How the restore went."""

    phase: RestorePhase | None = Field(
        default=None, description="Pending, InProgress, Succeeded or Failed; a finished restore never runs again."
    )
    host: str | None = Field(default=None, description="Host whose disks were put back.")
    completion_time: datetime | None = Field(default=None, description="When it ended, for good or ill.")
    failure_reason: str | None = Field(
        default=None, description="Why it failed or was refused (for example: the VM is running)."
    )
    conditions: list[Condition] | None = conditions_field("restore")


class VirtualMachineRestore(Resource[VirtualMachineRestoreSpec, VirtualMachineRestoreStatus]):
    """A request to put a stopped VirtualMachine back to one of its snapshots, and its record.

    The agent of the VM's host reverts the VM's disks (and memory, when the
    snapshot kept it: the next start resumes the guest instead of booting it).
    A running VM is refused: stop it first.
    """

    kind: Literal["VirtualMachineRestore"] = "VirtualMachineRestore"
    spec: VirtualMachineRestoreSpec = Field(description="Which VM to put back, to which snapshot.")
    status: VirtualMachineRestoreStatus | None = Field(default=None, description="How the restore went.")

    crd = CRDInfo(
        plural="virtualmachinerestores",
        scope="Namespaced",
        short_names=("vrestore",),
        printer_columns=(
            PrinterColumn("VM", ".spec.vm"),
            PrinterColumn("Snapshot", ".spec.snapshot"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Reason", ".status.failureReason", priority=1),
            AGE,
        ),
    )

    @property
    def phase(self) -> RestorePhase | None:
        """status.phase, or None before the agent has seen the restore."""
        return self.status.phase if self.status else None

    @property
    def is_terminal(self) -> bool:
        """Whether it has ended (Succeeded or Failed)."""
        return self.phase in RESTORE_TERMINAL_PHASES
