"""Request and response models of /api/v1/vms/{id}/snapshots: a snapshot asked for, and how one reads over REST."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from vapor.model.snapshot import VM_NAME_PATTERN, RestorePhase, SnapshotPhase

from ._schema import Strict


class SnapshotQuery(BaseModel):
    """Where the VM lives, and how long to wait for its host's agent."""

    namespace: str = Field(default="default", pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    wait: float | None = Field(
        default=None, ge=0, le=300, description="Seconds to wait for the agent (default 30; 0: do not wait)."
    )


class CreateSnapshotRequest(Strict):
    """A snapshot of a VM: its disks, and with ``include_memory`` its memory and device state too."""

    name: str | None = Field(
        default=None,
        pattern=VM_NAME_PATTERN,
        max_length=200,
        description="Name of the snapshot in the VM's namespace; made from the VM's name when left out.",
    )
    include_memory: bool = Field(
        default=False,
        description=(
            "Keep the running guest's memory and device state too, so that a restore resumes it where it was. "
            "A running VM can be snapshotted only this way (its host's libvirt keeps a running domain's disks "
            "only together with its memory); a stopped VM has no memory to keep."
        ),
    )


class SnapshotView(BaseModel):
    """A VirtualMachineSnapshot as REST shows it."""

    name: str
    vm: str
    namespace: str
    phase: SnapshotPhase | None = Field(
        description="Pending, InProgress, Ready, Failed or Deleting; null before the agent has seen it."
    )
    include_memory: bool = Field(description="Whether the memory was asked for.")
    memory: bool | None = Field(description="Whether the memory and device state were kept.")
    size_bytes: int | None = Field(description="Bytes the snapshot holds in the disks (the memory state it kept).")
    disks: list[str] | None = Field(description="The VM's disks it covers (CD-ROMs are left out).")
    host: str | None = Field(description="Host whose disks hold it.")
    creation_time: datetime | None = Field(description="When it was taken.")
    failure_reason: str | None = Field(description="Why it could not be taken (for example a raw disk).")


class SnapshotList(BaseModel):
    """A VM's snapshots, oldest first."""

    items: list[SnapshotView]


class RestoreView(BaseModel):
    """A VirtualMachineRestore as REST shows it."""

    name: str
    vm: str
    namespace: str
    snapshot: str
    phase: RestorePhase | None = Field(description="Pending, InProgress, Succeeded or Failed.")
    host: str | None = Field(description="Host whose disks were put back.")
    completion_time: datetime | None = Field(description="When it ended.")
    failure_reason: str | None = Field(description="Why it failed.")


class SnapshotDeleted(BaseModel):
    """A snapshot deletion that was asked for (the agent merges it away from the disks first)."""

    name: str
    vm: str
    namespace: str
    message: str
