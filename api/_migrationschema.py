"""Request and response models of live migration over REST (POST /vms/{id}/migrate, /migrations).

The request models take the model's types (vapor.model.migration), so the
REST API and the CRD accept the same values.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from vapor.model.migration import CopyStorage, MigrationPhase
from vapor.model.virtualmachine import DNS_LABEL_PATTERN

from ._schema import HostState, Strict
from ._vmschema import VMQuery


class MigrateRequest(Strict):
    """How to move a virtual machine (the contract's fields, then Vapor's optional tuning)."""

    destination_host_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        description="Host to move to, by id (UUID) or name; left out, the operator picks a Ready host with room.",
    )
    live: bool = Field(default=True, strict=True, description="Move the VM while it runs (it must be running).")
    persistent: bool = Field(default=True, strict=True, description="Define the VM permanently on the destination.")
    undefine_source: bool = Field(
        default=True, strict=True, description="Remove the VM's definition from the source afterwards."
    )
    copy_storage: CopyStorage = Field(
        default="none",
        description="none: disks on storage both hosts share; all: copy every disk; incremental: copy what differs.",
    )
    bandwidth_mib_per_second: int = Field(
        default=0, ge=0, le=1_000_000, strict=True, description="Bandwidth limit in MiB/s; 0: unlimited."
    )
    max_downtime_ms: int | None = Field(
        default=None, ge=1, le=600_000, strict=True, description="Longest pause allowed for the switch-over, in ms."
    )
    auto_converge: bool = Field(default=False, strict=True, description="Throttle the guest's CPUs to converge.")
    post_copy: bool = Field(
        default=False, strict=True, description="Switch to post-copy if pre-copy does not converge."
    )
    completion_timeout_per_gib: int = Field(
        default=150, ge=1, le=86_400, strict=True, description="Abort after this many seconds per GiB of guest memory."
    )
    progress_timeout_seconds: int = Field(
        default=150, ge=1, le=86_400, strict=True, description="Abort after this many seconds without progress."
    )


class MigrationStarted(BaseModel):
    """A migration that was asked for: the operator takes it from here."""

    migration_id: str = Field(description="Stable id of the Migration (its uid); GET /api/v1/migrations/{id}.")
    status: Literal["initiated"] = "initiated"
    name: str = Field(description="Name of the Migration resource (kubectl get vmig <name> -n <namespace>).")
    namespace: str
    vm_id: str
    vm_name: str
    destination_host_id: str | None
    destination_host_name: str | None


class MigrationProgressView(BaseModel):
    """How far the copy has come (from libvirt's job statistics, as the source agent reports them)."""

    percent: int
    data_total: int | None = Field(description="Bytes to copy in all.")
    data_processed: int | None = Field(description="Bytes copied so far.")
    data_remaining: int | None = Field(description="Bytes still to copy.")
    memory_iteration: int | None = Field(description="Pass over guest memory.")
    memory_dirty_rate: int | None = Field(description="Pages the guest dirties per second.")
    updated_at: str | None


class MigrationView(BaseModel):
    """A migration: what was asked and how far it is."""

    id: str = Field(description="Stable id (the resource's uid).")
    migration_id: str = Field(description="The same id, under the name POST /vms/{id}/migrate answers with.")
    name: str
    namespace: str
    vm_id: str | None = Field(description="Id of the VM, while it exists.")
    vm_name: str
    phase: str = Field(description="Pending, Scheduling, PreparingTarget, Running, Succeeded, Failed or Cancelled.")
    live: bool
    persistent: bool
    undefine_source: bool
    copy_storage: str
    bandwidth_mib_per_second: int
    source_host_id: str | None
    source_host_name: str | None
    destination_host_id: str | None
    destination_host_name: str | None
    queue_position: int | None = Field(description="Place in the queue while the limits hold it back.")
    progress: MigrationProgressView | None
    start_time: str | None
    end_time: str | None
    downtime_ms: int | None
    failure_reason: str | None
    cancel_requested: bool
    conditions: list[dict[str, Any]]
    requested_by: str | None
    created_at: str | None
    deleting: bool


class MigrationList(BaseModel):
    """Migrations, newest first."""

    migrations: list[MigrationView]
    count: int


class MigrationListQuery(BaseModel):
    """Filters of the migration list (all optional, combined with and)."""

    namespace: str | None = Field(default=None, pattern=DNS_LABEL_PATTERN, max_length=63)
    vm_id: str | None = Field(default=None, max_length=253, description="A VM's id or name.")
    host_id: str | None = Field(default=None, max_length=253, description="Source or destination host, id or name.")
    phase: MigrationPhase | None = None
    active: bool | None = Field(default=None, description="true: only unfinished ones; false: only finished ones.")


class CancelRequest(Strict):
    """Why a migration is cancelled (optional; the body itself may be left out)."""

    reason: str | None = Field(default=None, max_length=500, description="Recorded in the Migration's Event.")


class MigrationTargetsQuery(VMQuery):
    """The migration the pre-flight is for: the VM's namespace (when named by name) and how it would move."""

    copy_storage: CopyStorage = Field(
        default="none", description="As in POST /vms/{id}/migrate: decides the storage check."
    )
    live: bool = Field(default=True, description="As in POST /vms/{id}/migrate: a live move needs a running VM.")


class PreflightCheck(BaseModel):
    """One pre-flight check of a host for the VM, as the operator words it on a Migration."""

    name: str = Field(
        description="The check: DestinationCapacity, CPUCompatible, StorageCompatible, ImageReady, SnapshotsKept "
        "(the Migration's condition types), or Refused when the destination is ruled out before those."
    )
    ok: bool | None = Field(
        description="true: passes; false: refuses the host; null: not known yet (a host that has not reported its "
        "CPU), or a wait rather than a refusal (the host is fetching the VM's images)."
    )
    reason: str | None = Field(description="The condition's reason (CamelCase), none for Refused.")
    message: str = Field(description="What was found, for people.")


class MigrationTarget(BaseModel):
    """One host as the VM's destination: can it take the VM now, and each check."""

    host_id: str | None = Field(description="The host's stable id, once its agent reported it.")
    host_name: str
    status: HostState
    can_take: bool = Field(description="Whether the operator would accept a migration there now (no refusal).")
    refusal: str | None = Field(description="Why not, as the Migration's failure reason would say.")
    checks: list[PreflightCheck]


class MigrationTargets(BaseModel):
    """Every host as the destination of a VM's migration, by the operator's own pre-flight rules."""

    vm_id: str
    vm_name: str
    namespace: str
    source_host_name: str | None = Field(description="Where the VM is placed now.")
    copy_storage: CopyStorage
    live: bool
    targets: list[MigrationTarget] = Field(description="Every host, by name.")
