"""Request and response models of /api/v1/vms: a new VM, power actions, and the VM as REST shows it.

The request models take the model's types (vapor.model.virtualmachine), so
the REST API and the CRD accept the same values.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator

from vapor.model import quantity_bytes
from vapor.model.cloudinit import DNS_SUBDOMAIN_PATTERN, HOSTNAME_PATTERN, MAX_CLOUD_INIT, SSH_KEY_PATTERN
from vapor.model.virtualmachine import (
    ABSOLUTE_PATH_PATTERN,
    DNS_LABEL_PATTERN,
    MAC_PATTERN,
    MIN_MEMORY,
    DiskBus,
    Firmware,
    NetworkType,
    NICModel,
    RunStrategy,
    VMPhase,
    disk_path_problem,
)

from ._schema import Strict

Action = Literal["start", "stop", "restart", "pause", "resume"]
# The largest number of bytes a quantity of Kubernetes (and a JSON answer of the gateway) holds: 64 bits, signed.
MAX_BYTES = 2**63 - 1


class DiskRequest(Strict):
    """A disk of a new VM: exactly one of a new image of ``size``, an existing image at ``path``, or an ``image``.

    With ``image`` the disk is a copy-on-write overlay on that Image (``size``
    may grow it); ``cdrom`` attaches an iso Image or an ISO file read-only.
    """

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    size: str | None = Field(default=None, description="Size of a new qcow2 image, a quantity such as 10Gi.")
    path: str | None = Field(
        default=None,
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=4096,
        description=(
            "An existing image or block device on the host: a plain absolute path outside the system folders "
            "(/etc, /proc, /sys, /boot, /root, /run, /usr, ...). The host's agent accepts only images in its "
            "image folders (by default /var/lib/vapor/images and /var/lib/libvirt/images) and the block devices "
            "its admin lists; the VM is Failed with reason DiskPathRefused otherwise."
        ),
    )
    image: str | None = Field(
        default=None,
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
        description=(
            "Name of an Image (GET /api/v1/images): the disk is an overlay on the host's cached copy, made in "
            "milliseconds; the Image must exist (422 otherwise). The VM waits (condition ImageReady) while its "
            "host fetches the image."
        ),
    )
    cdrom: bool = Field(default=False, description="Attach read-only as a CD-ROM (an iso Image or an ISO file).")
    bus: DiskBus = "virtio"
    read_only: bool = False
    boot_order: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _one_source(self) -> DiskRequest:
        given = [self.size is not None and self.image is None, self.path is not None, self.image is not None]
        if given.count(True) != 1:
            raise ValueError(
                "a disk needs exactly one of size (a new image), path (an existing image) "
                "or image (an overlay on an Image, which size may grow)"
            )
        if self.cdrom and self.size is not None:
            raise ValueError("a cdrom disk is an image or a path as it is: it takes no size")
        return self

    @field_validator("size")
    @classmethod
    def _size(cls, value: str | None) -> str | None:
        if value is not None and quantity_or_error(value) < 2**20:
            raise ValueError("disk size must be a quantity of at least 1Mi, for example 10Gi")
        return value

    @field_validator("path")
    @classmethod
    def _path(cls, value: str | None) -> str | None:
        problem = disk_path_problem(value) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value


class NetworkRequest(Strict):
    """A network card of a new VM."""

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    type: NetworkType = "network"
    source: str | None = Field(default=None, max_length=253)
    model: NICModel = "virtio"
    mac: str | None = Field(default=None, pattern=MAC_PATTERN)


class SecretKeyRequest(Strict):
    """A key of a Secret in the VM's namespace."""

    name: str = Field(pattern=DNS_SUBDOMAIN_PATTERN, max_length=253, description="Name of the Secret.")
    key: str = Field(default="userdata", min_length=1, max_length=253, description="Key in the Secret's data.")


class CloudInitRequest(Strict):
    """First-boot configuration through cloud-init (NoCloud): the guest reads it from a CD-ROM labelled cidata.

    meta-data is made from the VM: instance-id (its id) and local-hostname
    (``hostname``, else its name). user-data and the Secret it may come from
    are checked before the VM is made (422 when they cannot be used).
    """

    user_data: str | None = Field(
        default=None,
        description=(
            f"user-data: a #cloud-config YAML mapping, or a script starting with #!; at most {MAX_CLOUD_INIT} bytes "
            "with ssh_authorized_keys merged in. #cloud-config that is not a YAML mapping, or too much, is refused "
            "with 422."
        ),
    )
    user_data_secret_ref: SecretKeyRequest | None = Field(
        default=None,
        description=(
            "Take user-data from a Secret of the VM's namespace instead (kept out of the VM resource). It must "
            "exist and be readable by you (422 or 403); its value is checked as user_data is. The host's agent "
            "reads it when it writes the seed: a VM whose Secret goes away waits (reason CloudInitSecretNotFound)."
        ),
    )
    network_data: str | None = Field(
        default=None,
        max_length=MAX_CLOUD_INIT,
        description=(
            "network-config (cloud-init network config version 1 or 2, YAML); DHCP on the first card when left out."
        ),
    )
    ssh_authorized_keys: list[Annotated[str, Field(pattern=SSH_KEY_PATTERN, max_length=16384)]] | None = Field(
        default=None,
        max_length=64,
        description=(
            "OpenSSH public keys for the guest's default user: added to a #cloud-config's ssh_authorized_keys "
            "(its own kept), or given beside a script."
        ),
    )
    hostname: str | None = Field(
        default=None,
        pattern=HOSTNAME_PATTERN,
        max_length=253,
        description="The guest's hostname (meta-data local-hostname); the VM's name when left out.",
    )

    @model_validator(mode="after")
    def _one_source(self) -> CloudInitRequest:
        if self.user_data is not None and self.user_data_secret_ref is not None:
            raise ValueError("give user_data or user_data_secret_ref, not both")
        return self


def memory_text(value: str | int) -> str:
    """A memory size as the spec keeps it: a quantity string, or an integer number of MiB made one."""
    if isinstance(value, bool):
        raise ValueError("memory must be a quantity string such as 512Mi or an integer number of MiB")
    text = f"{value}Mi" if isinstance(value, int) else value
    size = quantity_or_error(text)
    if size < quantity_bytes(MIN_MEMORY):
        raise ValueError(f"memory must be at least {MIN_MEMORY} (got {value!r})")
    if size > MAX_BYTES:
        raise ValueError(f"memory must be at most {MAX_BYTES} bytes, a 64-bit number (got {value!r})")
    return text


# The types of the fields a new VM and a change of one share (POST /vms and PATCH /vms/{id}).
CPUCount = Annotated[int, Field(ge=1, le=512, strict=True)]
Memory = Annotated[str | int, AfterValidator(memory_text)]
Disks = Annotated[list[DiskRequest], Field(max_length=64)]
Networks = Annotated[list[NetworkRequest], Field(max_length=32)]
GraceSeconds = Annotated[int, Field(ge=0, le=3600, strict=True)]
MAX_CPU = "Most vCPUs the running VM can be given without a restart (CPU hot-plug); cpu when left out."
MAX_MEMORY = (
    "Most memory the running VM can be given without a restart (the balloon's ceiling), a quantity or MiB; "
    "memory when left out."
)


class CreateVMRequest(Strict):
    """A new virtual machine.

    ``memory`` is a Kubernetes quantity string ("512Mi", "2Gi") or an integer number of MiB (512);
    either way at least 16Mi. ``max_cpu`` and ``max_memory`` are the ceilings a running VM can be
    changed up to without a restart (PATCH /api/v1/vms/{id}).
    """

    name: str = Field(pattern=DNS_LABEL_PATTERN, max_length=63)
    namespace: str = Field(default="default", pattern=DNS_LABEL_PATTERN, max_length=63)
    cpu: CPUCount = 1
    max_cpu: CPUCount | None = Field(default=None, description=MAX_CPU)
    memory: Memory = Field(description='A quantity such as "512Mi", or an integer number of MiB.')
    max_memory: Memory | None = Field(default=None, description=MAX_MEMORY)
    disks: Disks | None = None
    networks: Networks | None = None
    run_strategy: RunStrategy = "Halted"
    host_selector: dict[str, str] | None = None
    firmware: Firmware = Field(
        default="bios", description="bios (SeaBIOS) or uefi (OVMF); uefi needs an image made to boot with UEFI."
    )
    cloud_init: CloudInitRequest | None = Field(
        default=None, description="First-boot configuration of the guest through cloud-init (NoCloud)."
    )


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
    max_cpu: int | None = Field(default=None, description="The vCPU ceiling for live changes (cpu when null).")
    memory: str
    memory_bytes: int
    max_memory: str | None = Field(default=None, description="The memory ceiling for live changes (memory when null).")
    disks: list[dict[str, Any]]
    networks: list[dict[str, Any]]
    host_selector: dict[str, str] | None
    host: str | None
    host_id: str | None
    domain_uuid: str | None
    addresses: list[str] = Field(
        description=(
            "The guest's IP addresses: from its QEMU guest agent when it answers (condition AgentConnected), "
            "else from the DHCP leases of libvirt networks."
        )
    )
    interfaces: list[dict[str, Any]] = Field(
        default_factory=list,
        description=(
            "The guest's network interfaces: name (from the guest agent), mac, addresses with prefix length, "
            "and source (agent or lease)."
        ),
    )
    last_restart_request: str | None
    pending_changes: list[str] = Field(
        default_factory=list,
        description=(
            "Changed fields the running VM takes only at its next start (condition RestartRequired names them "
            "too); empty when it runs as its spec asks."
        ),
    )
    conditions: list[dict[str, Any]]
    created_at: str | None
    deleting: bool
    clone_from: dict[str, Any] | None = Field(
        default=None,
        description="For a clone: the VM (and snapshot) its disks were copied from, and how (linked or full).",
    )


class VMList(BaseModel):
    """Every virtual machine (in one namespace when asked), or one page of those the filters accept."""

    vms: list[VMView]
    count: int = Field(description="How many VMs this body holds.")
    continue_: str | None = Field(
        default=None,
        alias="continue",
        description="Paged or filtered lists: the token that asks for the next page (?continue=), null on the last.",
    )
    remaining: int | None = Field(
        default=None, description="Paged or filtered lists: how many more VMs the next pages hold."
    )


class VMQuery(BaseModel):
    """Where a VM named by name lives."""

    namespace: str = Field(default="default", pattern=DNS_LABEL_PATTERN, max_length=63)


class VMListQuery(BaseModel):
    """Which VMs to list: filters, and a page size with the token of the page to start from.

    Without limit, continue, host or phase the whole list answers as it always has
    (every VM, or one namespace's); with any of them the body also carries
    ``continue`` and ``remaining``.
    """

    namespace: str | None = Field(
        default=None, pattern=DNS_LABEL_PATTERN, max_length=63, description="Only the VMs of this namespace."
    )
    host: str | None = Field(
        default=None, max_length=253, description="Only the VMs placed on this Host (its name or id)."
    )
    phase: VMPhase | None = Field(default=None, description="Only the VMs in this phase (Running, Stopped...).")
    limit: int | None = Field(
        default=None, ge=1, le=5000, description="At most this many VMs, in (namespace, name) order."
    )
    continue_: str | None = Field(
        default=None,
        alias="continue",
        max_length=2048,
        description="The continue token of the previous page: this page starts after the last VM it held.",
    )

    @property
    def paged(self) -> bool:
        """Whether anything beyond the namespace was asked (then the body carries continue and remaining)."""
        return any(v is not None for v in (self.host, self.phase, self.limit, self.continue_))


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
