"""Request and response models of the REST API (snake_case on the wire, as the contract spells it).

The envelope, auth and hosts are here; virtual machines in _vmschema,
migrations in _migrationschema.

Every response is an envelope: ``Success[T]`` (``{"status": "success", "data": T}``)
or ``Failure`` (``{"status": "error", "error": {...}}``).
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

# The contract's envelope is shared with the agents (vapor.agentapi.envelope); the gateway documents it.
from vapor.agentapi.envelope import ErrorBody as ErrorBody
from vapor.agentapi.envelope import Failure as Failure
from vapor.agentapi.envelope import FieldError as FieldError
from vapor.agentapi.envelope import Success as Success
from vapor.hostaccounts import Credentials

T = TypeVar("T")

Role = Literal["admin", "viewer"]
HostState = Literal["connected", "disconnected", "unknown"]


class Strict(BaseModel):
    """A request model: unknown fields are refused, so a typo is an error rather than silently ignored."""

    model_config = ConfigDict(extra="forbid")


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


class LogoutResult(BaseModel):
    """A login that was ended."""

    message: str


# -- hosts ------------------------------------------------------------------------------------------


class HostView(BaseModel):
    """A host with its inventory, as its agent last reported it."""

    id: str | None = Field(description="Stable UUID of the machine.")
    name: str = Field(description="Name of the Host resource.")
    hostname: str | None
    status: HostState = Field(
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
    allocatable: dict[str, Any] | None = Field(
        default=None,
        description=(
            "What the operator may give to VMs on this host: cpu (vCPUs: logical CPUs times the CPU "
            "allocation ratio) and memory (bytes, never over-committed)."
        ),
    )
    allocated: dict[str, Any] | None = Field(
        default=None,
        description="What the VMs placed here and those migrating here take: cpu (vCPUs) and memory (bytes).",
    )
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
