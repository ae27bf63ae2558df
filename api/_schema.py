"""Request and response models of the REST API (snake_case on the wire, as the contract spells it).

Every response is an envelope: ``Success[T]`` (``{"status": "success", "data": T}``)
or ``Failure`` (``{"status": "error", "error": {...}}``).
"""

from __future__ import annotations

from typing import Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from vapor.hostaccounts import Credentials
from vapor.model import quantity_bytes
from vapor.model.virtualmachine import DNS_LABEL_PATTERN, MIN_MEMORY

T = TypeVar("T")

Role = Literal["admin", "viewer"]
Action = Literal["start", "stop", "restart", "pause", "resume"]


class Strict(BaseModel):
    """A request model: unknown fields are refused, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


# -- envelope ---------------------------------------------------------------------------------------


class Success(BaseModel, Generic[T]):
    """A successful answer: the result is in ``data``."""

    status: Literal["success"] = "success"
    data: T


class FieldError(BaseModel):
    """One field that failed validation."""

    field: str = Field(description="Dotted path of the field, for example disks[0].size.")
    message: str


class ErrorBody(BaseModel):
    """What went wrong."""

    code: str = Field(description="UNAUTHORIZED, INVALID_INPUT, NOT_FOUND, PERMISSION_DENIED, ALREADY_EXISTS, ...")
    message: str = Field(description="A sentence for people.")
    details: str | None = Field(default=None, description="More about the failure, when there is more.")
    fields: list[FieldError] | None = Field(default=None, description="Each bad field (INVALID_INPUT only).")


class Failure(BaseModel):
    """A failed answer."""

    status: Literal["error"] = "error"
    error: ErrorBody


# -- auth -------------------------------------------------------------------------------------------


class LoginRequest(Credentials):
    """Credentials of a Linux user of the host (the same model the agent checks them with)."""


class RefreshRequest(Strict):
    """A refresh token from a login or an earlier refresh."""

    refresh_token: str = Field(min_length=1, max_length=512)


class UserInfo(BaseModel):
    """Who a token speaks for."""

    username: str
    role: Role = Field(description="admin may change resources; viewer may only read.")
    groups: list[str]


class TokenPair(BaseModel):
    """A bearer token and the refresh token that renews it (fields of both API documents)."""

    token: str = Field(description="JWT (HS256) for the Authorization: Bearer header.")
    token_type: Literal["Bearer"] = "Bearer"
    expires_at: int = Field(description="Unix time at which the token expires.")
    expires_in: int = Field(description="Seconds until the token expires.")
    refresh_token: str = Field(description="Single-use: trade it at /auth/refresh for a new pair.")
    refresh_expires_in: int = Field(description="Seconds until the refresh token expires.")
    user: UserInfo


# -- hosts ------------------------------------------------------------------------------------------


class HostView(BaseModel):
    """A host with its inventory, as its agent last reported it."""

    id: str | None = Field(description="Stable UUID of the machine.")
    name: str = Field(description="Name of the Host resource.")
    hostname: str | None
    status: Literal["connected", "disconnected", "unknown"] = Field(
        description="connected when the Host is Ready, disconnected when not, unknown before the first report."
    )
    sync_cursor: int | None = Field(description="Unix time of the last inventory the agent wrote.")
    os: str | None
    kernel: str | None
    uptime: int | None = Field(description="Seconds since boot.")
    load_average: list[float] | None
    cpu: dict[str, Any] | None
    memory: dict[str, Any] | None
    interfaces: list[dict[str, Any]]
    disks: list[dict[str, Any]]
    hypervisor: dict[str, Any] | None
    capacity: dict[str, Any] | None
    maintenance: bool
    drain: dict[str, Any] | None = Field(
        default=None,
        description="Progress of a maintenance drain: phase (Draining, Drained, Failed), remaining, message.",
    )
    vm_count: int
    labels: dict[str, str]


class HostList(BaseModel):
    """Every host."""

    hosts: list[HostView]
    count: int


# -- virtual machines -------------------------------------------------------------------------------


class DiskRequest(Strict):
    """A disk of a new VM: a new image of ``size``, or an existing image at ``path``."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    size: str | None = Field(default=None, description="Size of a new qcow2 image, a quantity such as 10Gi.")
    path: str | None = Field(default=None, pattern=r"^/", max_length=4096)
    bus: Literal["virtio", "sata", "scsi", "ide"] = "virtio"
    read_only: bool = False
    boot_order: int | None = Field(default=None, ge=1)

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and quantity_or_error(value) < 2**20:
            raise ValueError("disk size must be a quantity of at least 1Mi, for example 10Gi")
        return value


class NetworkRequest(Strict):
    """A network card of a new VM."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    type: Literal["network", "bridge", "user"] = "network"
    source: str | None = Field(default=None, max_length=253)
    model: Literal["virtio", "e1000", "rtl8139"] = "virtio"
    mac: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


class CreateVMRequest(Strict):
    """A new virtual machine.

    ``memory`` is a Kubernetes quantity string ("512Mi", "2Gi") or an integer number of MiB (512);
    either way at least 16Mi.
    """

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    namespace: str = Field(default="default", pattern=DNS_LABEL_PATTERN, max_length=63)
    cpu: int = Field(default=1, ge=1, le=512, strict=True)
    memory: str | int = Field(description='A quantity such as "512Mi", or an integer number of MiB.')
    disks: list[DiskRequest] | None = Field(default=None, max_length=64)
    networks: list[NetworkRequest] | None = Field(default=None, max_length=32)
    run_strategy: Literal["Running", "Halted", "Paused"] = "Halted"
    host_selector: dict[str, str] | None = None

    @field_validator("memory")
    @classmethod
    def _memory(cls, value: str | int) -> str:
        if isinstance(value, bool):
            raise ValueError("memory must be a quantity string such as 512Mi or an integer number of MiB")
        text = f"{value}Mi" if isinstance(value, int) else value
        if quantity_or_error(text) < quantity_bytes(MIN_MEMORY):
            raise ValueError(f"memory must be at least {MIN_MEMORY} (got {value!r})")
        return text


def quantity_or_error(value: str) -> int:
    """Bytes of a quantity, or a ValueError a client can read."""
    try:
        return quantity_bytes(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a quantity; write for example 512Mi or 2Gi") from None


class VMView(BaseModel):
    """A virtual machine: what was asked (spec) and what is (status)."""

    id: str = Field(description="Stable id (the resource's uid).")
    name: str
    namespace: str
    status: str = Field(description="The phase, or Pending before the operator has seen the VM.")
    phase: str | None
    run_strategy: str
    cpu: int
    memory: str
    memory_bytes: int
    disks: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    host_selector: dict[str, str] | None
    host: str | None
    host_id: str | None
    domain_uuid: str | None
    addresses: list[str]
    last_restart_request: str | None
    conditions: list[dict[str, Any]]
    created_at: str | None
    deleting: bool


class VMList(BaseModel):
    """Every virtual machine (in one namespace when asked)."""

    vms: list[VMView]
    count: int


class VMQuery(BaseModel):
    """Where a VM named by name lives."""

    namespace: str = Field(default="default", pattern=DNS_LABEL_PATTERN, max_length=63)


class VMListQuery(BaseModel):
    """An optional namespace to list."""

    namespace: str | None = Field(default=None, pattern=DNS_LABEL_PATTERN, max_length=63)


class ActionQuery(BaseModel):
    """Where the VM lives, and how long to wait for the agent."""

    namespace: str = Field(default="default", pattern=DNS_LABEL_PATTERN, max_length=63)
    wait: float | None = Field(
        default=None, ge=0, le=300, description="Seconds to wait for the agent (default 30; 0: do not wait)."
    )


class ActionRequest(Strict):
    """A power action."""

    action: Action
    force: bool = Field(default=False, description="With stop: power off at once instead of a guest shutdown.")


class ActionResult(BaseModel):
    """What became of a power action."""

    id: str
    name: str
    namespace: str
    action: Action
    force: bool
    completed: bool = Field(description="True once the agent reported the result; false when the wait ran out.")
    phase: str | None = Field(description="The VM's phase when the answer was made.")
    target_phase: str | None = Field(description="The phase that completes the action (None for restart).")
    message: str


class DeleteResult(BaseModel):
    """A deletion that was asked for (the agent's finalizer may hold the VM for a moment)."""

    id: str
    name: str
    namespace: str
    message: str


# -- migrations -------------------------------------------------------------------------------------

CopyStorageMode = Literal["none", "all", "incremental"]


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
    copy_storage: CopyStorageMode = Field(
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
    phase: Literal["Pending", "Scheduling", "PreparingTarget", "Running", "Succeeded", "Failed", "Cancelled"] | None = (
        None
    )
    active: bool | None = Field(default=None, description="true: only unfinished ones; false: only finished ones.")


class CancelRequest(Strict):
    """Why a migration is cancelled (optional; the body itself may be left out)."""

    reason: str | None = Field(default=None, max_length=500, description="Recorded in the Migration's Event.")
