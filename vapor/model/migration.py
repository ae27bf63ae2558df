"""Migration: moving one VirtualMachine to another Host (namespaced).

A Migration is a request and its record: the spec says what to move and how,
the operator drives it through its phases and the two agents do the work.
Once created, the spec cannot change, except to ask for cancellation.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from ._meta import Condition, Model, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource

MigrationPhase = Literal["Pending", "Scheduling", "PreparingTarget", "Running", "Succeeded", "Failed", "Cancelled"]
TERMINAL_PHASES: frozenset[str] = frozenset({"Succeeded", "Failed", "Cancelled"})
# Phases that hold a slot of the cluster's limits: the agents are at work.
ACTIVE_PHASES: frozenset[str] = frozenset({"PreparingTarget", "Running"})
CopyStorage = Literal["none", "all", "incremental"]


def _immutable(what: str) -> dict[str, Any]:
    return {
        "x-kubernetes-validations": [
            {"rule": "self == oldSelf", "message": f"{what} cannot be changed once the Migration exists"}
        ]
    }


class MigrationSpec(Model):
    """What to move, where, and how."""

    vm_name: str = Field(
        description="Name of the VirtualMachine to move, in the Migration's namespace.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
        json_schema_extra=_immutable("vmName"),
    )
    destination_host: str | None = Field(
        default=None,
        description="Host to move to, by name or id; when left out the operator picks a Ready host with room.",
        max_length=253,
        json_schema_extra=_immutable("destinationHost"),
    )
    live: bool = Field(
        default=True, description="Move a running VM without stopping it; false copies it while shut off."
    )
    persistent: bool = Field(default=True, description="Define the VM permanently on the destination.")
    undefine_source: bool = Field(
        default=True, description="Remove the VM's definition from the source host afterwards."
    )
    copy_storage: CopyStorage = Field(
        default="none",
        description="none: disks are on storage both hosts share; all: copy every disk; incremental: copy only what differs from a shared base image.",
    )
    bandwidth_mib_per_second: int = Field(
        default=0, ge=0, alias="bandwidthMiBPerSecond", description="Bandwidth limit in MiB/s; 0 means unlimited."
    )
    max_downtime_ms: int | None = Field(
        default=None,
        ge=1,
        le=600000,
        description="Longest pause of the guest allowed for the final switch-over, in milliseconds.",
    )
    auto_converge: bool = Field(
        default=False, description="Slow the guest's CPUs down if its memory changes faster than it can be copied."
    )
    post_copy: bool = Field(
        default=False, description="Switch to post-copy when pre-copy does not converge (live only)."
    )
    completion_timeout_per_gib: int = Field(
        default=150,
        ge=1,
        alias="completionTimeoutPerGiB",
        description="Abort when the migration takes longer than this many seconds per GiB of guest memory.",
    )
    progress_timeout_seconds: int = Field(
        default=150, ge=1, description="Abort when no progress is made for this many seconds."
    )
    cancel: bool = Field(
        default=False,
        description="Set to true to abort the migration; the VM keeps running on the source. Cannot be undone.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "!oldSelf || self", "message": "a cancelled Migration cannot be resumed"}
            ]
        },
    )


class MigrationProgress(Model):
    """How far a running migration has come, from libvirt's job statistics."""

    percent: int = Field(default=0, ge=0, le=100, description="Percent of the data copied.")
    data_total_bytes: int | None = Field(default=None, ge=0, description="Bytes to copy in all.")
    data_processed_bytes: int | None = Field(default=None, ge=0, description="Bytes copied so far.")
    data_remaining_bytes: int | None = Field(default=None, ge=0, description="Bytes still to copy.")
    memory_iteration: int | None = Field(
        default=None, ge=0, description="Pass over guest memory (dirty pages are copied again)."
    )
    memory_dirty_rate: int | None = Field(default=None, ge=0, description="Pages the guest dirties per second.")
    updated_at: datetime | None = Field(default=None, description="When this progress was read.")


class MigrationStatus(Model):
    """Where the migration is (the operator writes phases, the source agent progress)."""

    phase: MigrationPhase | None = Field(
        default=None, description="Pending, Scheduling, PreparingTarget, Running, Succeeded, Failed or Cancelled."
    )
    source_host: str | None = Field(default=None, description="Host the VM was on when the migration began.")
    target_host: str | None = Field(default=None, description="Host the VM is moving to (name).")
    queue_position: int | None = Field(default=None, ge=0, description="Place in the queue while limits hold it back.")
    progress: MigrationProgress | None = Field(default=None, description="Data copied so far.")
    start_time: datetime | None = Field(default=None, description="When libvirt began the migration.")
    end_time: datetime | None = Field(default=None, description="When it ended, for good or ill.")
    downtime_ms: int | None = Field(
        default=None, ge=0, description="How long the guest was paused for the switch-over, in milliseconds."
    )
    failure_reason: str | None = Field(default=None, description="Why the migration failed or was refused.")
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the operator last acted on."
    )
    conditions: list[Condition] | None = conditions_field("migration")


class Migration(Resource[MigrationSpec, MigrationStatus]):
    """A request to move a VirtualMachine to another host, and its record.

    The operator checks it (pre-flight conditions), queues it within the
    cluster's limits and drives it through its phases; the agents of the two
    hosts do the work with libvirt.
    """

    kind: Literal["Migration"] = "Migration"
    spec: MigrationSpec = Field(description="What to move, where, and how.")
    status: MigrationStatus | None = Field(default=None, description="Where the migration is.")

    crd = CRDInfo(
        plural="migrations",
        scope="Namespaced",
        short_names=("vmig",),
        printer_columns=(
            PrinterColumn("VM", ".spec.vmName"),
            PrinterColumn("Source", ".status.sourceHost"),
            PrinterColumn("Destination", ".status.targetHost"),
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Progress", ".status.progress.percent", "integer", "Percent of the data copied."),
            PrinterColumn("Live", ".spec.live", "boolean", priority=1),
            PrinterColumn("Copy", ".spec.copyStorage", priority=1),
            AGE,
        ),
    )

    @property
    def phase(self) -> MigrationPhase | None:
        """status.phase, or None before the operator has seen the Migration."""
        return self.status.phase if self.status else None

    @property
    def is_terminal(self) -> bool:
        """Whether the migration has ended: Succeeded, Failed or Cancelled."""
        return self.phase in TERMINAL_PHASES

    @property
    def is_active(self) -> bool:
        """Whether the agents are at work on it (PreparingTarget or Running): it holds a slot of the limits."""
        return self.phase in ACTIVE_PHASES

    @property
    def target_host(self) -> str | None:
        """status.targetHost: where the VM is moving to, once the operator chose it."""
        return self.status.target_host if self.status else None
