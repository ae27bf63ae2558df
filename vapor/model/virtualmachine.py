"""VirtualMachine: a libvirt domain the fleet runs somewhere (namespaced).

The operator places it on a host (``status.host`` and the host label); from
then on that host's agent defines and runs the domain and reports its state.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, JsonValue

from ._meta import Condition, Model, Quantity, conditions_field
from ._resource import AGE, CRDInfo, PrinterColumn, Resource
from .cloudinit import DNS_SUBDOMAIN_PATTERN, CloudInitSpec

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ABSOLUTE_PATH_PATTERN = r"^/[^\x00]*$"
MAC_PATTERN = r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$"

RunStrategy = Literal["Running", "Halted", "Paused"]
Firmware = Literal["bios", "uefi"]
DiskBus = Literal["virtio", "sata", "scsi", "ide"]
NetworkType = Literal["network", "bridge", "user"]
NICModel = Literal["virtio", "e1000", "rtl8139"]
VMPhase = Literal[
    "Pending",
    "Scheduled",
    "Unschedulable",
    "Starting",
    "Running",
    "Paused",
    "Stopping",
    "Stopped",
    "Migrating",
    "Failed",
    "Unknown",
    "Terminating",
]
MIN_MEMORY = "16Mi"
# VM phases in which a live migration can start (the domain is active).
LIVE_MIGRATABLE_PHASES: frozenset[str] = frozenset({"Running", "Paused"})


def _quantity_at_least(minimum: str, what: str) -> dict[str, JsonValue]:
    return {
        "rule": (
            "type(self) == int ? self >= quantity('" + minimum + "').asInteger() : "
            "(isQuantity(self) && quantity(self).compareTo(quantity('" + minimum + "')) >= 0)"
        ),
        "message": f"{what} must be a quantity of at least {minimum}, for example 512Mi or 2Gi",
    }


# Host folders no VM disk's path may be in, whatever the host; each agent also allows only its image
# folders and the block devices its admin lists (see the agent's --image-dir and --block-device).
FORBIDDEN_DISK_TREES = (
    "/etc",
    "/proc",
    "/sys",
    "/boot",
    "/root",
    "/run",
    "/var/run",
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib64",
    "/var/spool",
    "/var/lib/kubelet",
)
_PLAIN_PATH_MESSAGE = "a disk path must be a plain absolute path, without ., .. or empty parts"
_FORBIDDEN_DISK_MESSAGE = "a disk path must not be in a system folder (" + ", ".join(FORBIDDEN_DISK_TREES) + ")"


def disk_path_problem(path: str) -> str | None:
    """Why ``path`` can be no VM disk's path on any host (what the CRD's rules check), or None."""
    parts = path.split("/")
    if not path.startswith("/") or "" in parts[1:] or any(p in (".", "..") for p in parts):
        return _PLAIN_PATH_MESSAGE
    if any(path == tree or path.startswith(tree + "/") for tree in FORBIDDEN_DISK_TREES):
        return _FORBIDDEN_DISK_MESSAGE
    return None


def _bytes(cel: str) -> str:
    """CEL: the bytes of an int-or-string quantity."""
    return f"(type({cel}) == int ? {cel} : quantity({cel}).asInteger())"


class DiskSpec(Model):
    """A virtual disk: a new blank qcow2 image, an existing image file, or an overlay on an Image."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "[has(self.size) && !has(self.image), has(self.path), has(self.image)]"
                    ".filter(x, x).size() == 1",
                    "message": "a disk needs exactly one of size (a new image), path (an existing image) "
                    "or image (an overlay on an Image, which size may grow)",
                },
                {
                    "rule": "!has(self.cdrom) || !self.cdrom || !has(self.size)",
                    "message": "a cdrom disk is an image or a path as it is: it takes no size",
                },
            ]
        }
    )

    name: str = Field(
        description="Name of the disk within the VM (a DNS label).", pattern=DNS_LABEL_PATTERN, max_length=63
    )
    size: Quantity | None = Field(
        default=None,
        description=(
            "Size of a new qcow2 image the agent creates for this VM, for example 10Gi. With image: the size "
            "the overlay is grown to (at least the image's virtual size; the guest grows its filesystem)."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                _quantity_at_least("1Mi", "disk size"),
                {
                    "rule": f"{_bytes('self')} >= {_bytes('oldSelf')}",
                    "message": "a disk can grow, never shrink: give at least its size now",
                },
            ]
        },
    )
    path: str | None = Field(
        default=None,
        description=(
            "Absolute path of an existing disk image on the host (for example on shared storage); "
            "the agent never deletes it. It must be in one of the host's image folders (by default "
            "/var/lib/vapor/images and /var/lib/libvirt/images), or be a block device the host's admin "
            "lists; the VM is Failed with reason DiskPathRefused otherwise."
        ),
        pattern=ABSOLUTE_PATH_PATTERN,
        max_length=4096,
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!self.contains('//') && !self.endsWith('/') && !self.contains('/./') "
                    "&& !self.endsWith('/.') && !self.contains('/../') && !self.endsWith('/..')",
                    "message": _PLAIN_PATH_MESSAGE,
                },
                {
                    "rule": "[" + ", ".join(f"'{t}'" for t in FORBIDDEN_DISK_TREES) + "]"
                    ".all(t, self != t && !self.startsWith(t + '/'))",
                    "message": _FORBIDDEN_DISK_MESSAGE,
                },
            ]
        },
    )
    image: str | None = Field(
        default=None,
        description=(
            "Name of an Image: the disk is a copy-on-write qcow2 overlay on the host's cached copy of it, "
            "made in milliseconds whatever the image's size; the Image itself is never written. The VM "
            "waits (condition ImageReady) while its host fetches the image."
        ),
        pattern=DNS_SUBDOMAIN_PATTERN,
        max_length=253,
    )
    cdrom: bool = Field(
        default=False,
        description="Attach as a read-only CD-ROM (an iso Image, or an ISO file at path), for installs.",
    )
    bus: DiskBus = Field(default="virtio", description="Bus the guest sees the disk on (a cdrom uses sata).")
    read_only: bool = Field(default=False, description="Attach the disk read-only.")
    boot_order: int | None = Field(default=None, ge=1, description="Boot priority: 1 boots first.")


class NetworkSpec(Model):
    """A virtual network card."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "self.type == 'user' || has(self.source)",
                    "message": "source is required for network and bridge cards",
                }
            ]
        }
    )

    name: str = Field(
        description="Name of the card within the VM (a DNS label).", pattern=DNS_LABEL_PATTERN, max_length=63
    )
    type: NetworkType = Field(
        default="network",
        description="network: a libvirt virtual network; bridge: a Linux bridge of the host; user: user-mode networking.",
    )
    source: str | None = Field(
        default=None,
        description="Name of the libvirt network or host bridge (required unless type is user).",
        max_length=253,
    )
    model: NICModel = Field(default="virtio", description="Card model the guest sees.")
    mac: str | None = Field(
        default=None, description="MAC address; generated by libvirt when left out.", pattern=MAC_PATTERN
    )


CloneMode = Literal["linked", "full"]


class CloneSource(Model):
    """The VM (or one of its snapshots) a new VM's disks are copied from."""

    vm: str = Field(
        description=(
            "Name of the VirtualMachine to copy, in this VM's namespace. It must be stopped unless snapshot "
            "is given; the clone is placed on its host."
        ),
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    snapshot: str | None = Field(
        default=None,
        description="Copy the disks as this VirtualMachineSnapshot of the VM kept them, not as they are now.",
        pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$",
        max_length=253,
    )
    mode: CloneMode = Field(
        default="linked",
        description=(
            "linked: a disk that is an overlay on an Image stays one (only the source's own changes are "
            "copied); full: every disk is copied whole, standing alone. Disks at a path are not copied: a "
            "CD-ROM or read-only one is shared, a writable one is refused (condition Cloned, CloneUnsupported)."
        ),
    )


class VirtualMachineSpec(Model):
    """The virtual machine a person wants."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "!has(self.maxCpu) || self.cpu <= self.maxCpu",
                    "message": "cpu must be at most maxCpu (raise maxCpu too; a new maxCpu takes effect at the next start)",
                },
                {
                    "rule": f"!has(self.maxMemory) || {_bytes('self.memory')} <= {_bytes('self.maxMemory')}",
                    "message": "memory must be at most maxMemory (raise maxMemory too; it takes effect at the next start)",
                },
            ]
        }
    )

    run_strategy: RunStrategy = Field(
        default="Halted",
        description="Running: keep the domain running; Halted: keep it shut off; Paused: keep it defined and paused.",
    )
    cpu: int = Field(
        default=1,
        ge=1,
        le=512,
        description="Virtual CPUs (at least 1). Raised or lowered live up to maxCpu; beyond it at the next start.",
    )
    max_cpu: int | None = Field(
        default=None,
        ge=1,
        le=512,
        description=(
            "Most virtual CPUs the running VM can be given without a restart (CPU hot-plug): the domain is "
            "started with this many, cpu of them online. cpu when left out. Changing it takes a restart."
        ),
    )
    memory: Quantity = Field(
        description="Guest memory as a Kubernetes quantity, at least 16Mi (for example 512Mi or 2Gi).",
        json_schema_extra={"x-kubernetes-validations": [_quantity_at_least(MIN_MEMORY, "memory")]},
    )
    max_memory: Quantity | None = Field(
        default=None,
        description=(
            "Most memory the running VM can be given without a restart (the balloon's ceiling): memory can "
            "then be raised or lowered live up to it. memory when left out. Changing it takes a restart."
        ),
        json_schema_extra={"x-kubernetes-validations": [_quantity_at_least(MIN_MEMORY, "maxMemory")]},
    )
    disks: list[DiskSpec] | None = Field(
        default=None,
        max_length=64,
        description="Virtual disks, in the order the guest sees them.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    networks: list[NetworkSpec] | None = Field(
        default=None,
        max_length=32,
        description="Virtual network cards.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    firmware: Firmware = Field(
        default="bios",
        description="bios (SeaBIOS) or uefi (OVMF); uefi needs an image made to boot with UEFI.",
    )
    cloud_init: CloudInitSpec | None = Field(
        default=None, description="First-boot configuration through cloud-init (NoCloud)."
    )
    host_selector: dict[str, str] | None = Field(
        default=None,
        description="Labels a Host must carry for the VM to be placed on it.",
    )
    host: str | None = Field(
        default=None,
        description="Name of the Host to run on, bypassing the operator's choice. Must still be Ready and have room.",
        max_length=253,
    )
    clone_from: CloneSource | None = Field(
        default=None,
        description=(
            "Make this VM's disks as copies of another VM's (POST /api/v1/vms/{id}/clone fills it in): disks "
            "with the same name are copied instead of made blank or from the Image. Fixed once the VM exists."
        ),
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "cloneFrom is fixed once the VM exists"}
            ]
        },
    )
    graceful_shutdown_seconds: int = Field(
        default=60,
        ge=0,
        le=3600,
        description="How long a graceful stop waits for the guest to shut down before powering it off.",
    )


class GuestInterface(Model):
    """A network interface as the guest sees it."""

    name: str | None = Field(default=None, description="Interface name in the guest (eth0, enp1s0), when known.")
    mac: str | None = Field(default=None, description="MAC address.")
    addresses: list[str] = Field(default_factory=list, description="Addresses with prefix length (10.0.0.5/24).")
    source: Literal["agent", "lease"] = Field(
        description="agent: the guest agent reported it; lease: a DHCP lease of a libvirt network."
    )


class VirtualMachineStatus(Model):
    """The virtual machine as it is (placement by the operator, the rest by the host's agent)."""

    phase: VMPhase | None = Field(default=None, description="Where the VM is in its life.")
    host: str | None = Field(default=None, description="Name of the Host the VM is placed on (operator).")
    host_id: str | None = Field(default=None, description="Stable id of that Host (operator).")
    domain_uuid: str | None = Field(default=None, description="UUID of the libvirt domain.")
    addresses: list[str] | None = Field(
        default=None,
        description=(
            "The guest's IP addresses (without prefix length), from its guest agent when it answers, "
            "else from the DHCP leases of libvirt networks; loopback and link-local ones left out."
        ),
    )
    interfaces: list[GuestInterface] | None = Field(
        default=None,
        description="The guest's network interfaces with their addresses, as the addresses were learnt.",
        json_schema_extra={"x-kubernetes-list-type": "atomic"},
    )
    migration: str | None = Field(default=None, description="Name of the Migration moving this VM now, if any.")
    pending_changes: list[str] | None = Field(
        default=None,
        description=(
            "Spec fields changed while the domain runs that take effect only at its next start (for example "
            "maxMemory or disks[data].bus); condition RestartRequired names them too."
        ),
    )
    last_restart_request: str | None = Field(
        default=None,
        description="Value of the vapor.io/restart-requested-at annotation the agent last carried out.",
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the agent last acted on."
    )
    conditions: list[Condition] | None = conditions_field("virtual machine")


class VirtualMachine(Resource[VirtualMachineSpec, VirtualMachineStatus]):
    """A virtual machine run by libvirt on one of the fleet's hosts.

    Set spec.runStrategy to Running to start it; the operator places it on a
    Ready host with room and that host's agent runs it.
    """

    kind: Literal["VirtualMachine"] = "VirtualMachine"
    spec: VirtualMachineSpec = Field(description="The virtual machine a person wants.")
    status: VirtualMachineStatus | None = Field(default=None, description="The virtual machine as it is.")

    crd = CRDInfo(
        plural="virtualmachines",
        scope="Namespaced",
        short_names=("vvm",),
        printer_columns=(
            PrinterColumn("Phase", ".status.phase"),
            PrinterColumn("Host", ".status.host"),
            PrinterColumn("CPU", ".spec.cpu", "integer"),
            PrinterColumn("Memory", ".spec.memory"),
            PrinterColumn("Address", ".status.addresses[0]", description="The guest's first address."),
            PrinterColumn("Run", ".spec.runStrategy", description="Run strategy.", priority=1),
            PrinterColumn("Domain", ".status.domainUuid", priority=1),
            AGE,
        ),
    )

    @property
    def phase(self) -> VMPhase | None:
        """status.phase, or None before anyone reported it."""
        return self.status.phase if self.status else None

    @property
    def host(self) -> str | None:
        """status.host: the Host the operator placed the VM on, or None."""
        return (self.status.host if self.status else None) or None

    @property
    def can_live_migrate(self) -> bool:
        """Whether a live migration can start now: the domain runs (Running or Paused)."""
        return self.phase in LIVE_MIGRATABLE_PHASES
